"""A render worker process: jobs in on stdin, results out on stdout.

Started by ``imagepipe.rendering.pool``, with stdin and stdout both one end of a
socket pair; not meant to be run by hand.  Frames are an 8-byte length and a
pickle (the socket connects two processes of the same program; no untrusted
data is unpickled -- images travel as bytes).
"""
import os
import pickle
import resource
import sys

from imagepipe.rendering.pool import HEADER
from imagepipe.rendering.probe import apply_pillow_policy
from imagepipe.rendering.render import render


def _limit_memory(megabytes):
    # RLIMIT_AS counts address space, so the limit sits above what the
    # interpreter and Pillow already map.
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    limit = in_use + megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _read_exact(stream, size):
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def serve(stdin, stdout):
    while True:
        try:
            size = HEADER.unpack(_read_exact(stdin, HEADER.size))[0]
            _, data, presets, kwargs = pickle.loads(_read_exact(stdin, size))
        except EOFError:
            return  # the parent is gone or closed the pool
        try:
            result = (True, render(data, presets, **kwargs))
        except MemoryError:
            result = (False, MemoryError())
        except Exception as exc:
            result = (False, exc)
        payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(HEADER.pack(len(payload)) + payload)
        stdout.flush()


def main():
    # Plugins (pillow-heif maps libheif and its codecs) load before the limit,
    # which is measured from what is mapped then.
    apply_pillow_policy()
    _limit_memory(int(sys.argv[1]))
    # Rendering yields the CPU to the gateway and storage on the same host,
    # so uploads are answered at once even while every core renders.
    os.nice(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    # eventlet in the parent may have made our socket non-blocking
    os.set_blocking(sys.stdin.fileno(), True)
    # the socket carries frames only: anything a library prints goes to stderr
    frames_in = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    frames_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(frames_in, frames_out)


if __name__ == "__main__":
    main()
