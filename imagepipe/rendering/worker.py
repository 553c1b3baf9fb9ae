"""A render worker process: jobs in on stdin, results out on stdout.

Started by ``imagepipe.rendering.pool``, with stdin and stdout both one end of a
socket pair; not meant to be run by hand.  Frames are an 8-byte length and a
msgpack map (``imagepipe.rendering.frames``).  Before it reads a job the
worker limits its memory, lowers its priority and confines itself
(``imagepipe.rendering.sandbox``); its first frame says how confined it is.
"""
import os
import resource
import sys

from imagepipe.rendering import frames
from imagepipe.rendering.presets import Preset
from imagepipe.rendering.probe import apply_pillow_policy, probe
from imagepipe.rendering.render import render
from imagepipe.rendering.sandbox import SandboxUnavailable, confine
from imagepipe.rendering.structure import DecodeLimits


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


def _send(stream, message):
    stream.write(frames.pack(message))
    stream.flush()


def handle(job, reply):
    """One job: report the pixel count from the header, then the renditions (or an error)."""
    options = job["options"]
    identify = {name: options[name] for name in ("formats", "max_pixels") if name in options}
    try:
        info = probe(job["data"], limits=DecodeLimits(**job["limits"]), **identify)
        reply({"pixels": info.width * info.height * info.frames})
        presets = frames.records_from(job["presets"], Preset)
        renditions = render(job["data"], presets, **frames.options_from(options))
        reply({"renditions": [frames.record_to(rendition) for rendition in renditions]})
    except Exception as exc:  # MemoryError included: every failure goes back as data
        reply(frames.error_frame(exc))


def serve(stdin, stdout):
    while True:
        try:
            size = frames.HEADER.unpack(_read_exact(stdin, frames.HEADER.size))[0]
            _, job = frames.unpack(_read_exact(stdin, size))
        except EOFError:
            return  # the parent is gone or closed the pool
        handle(job, lambda message: _send(stdout, message))


def main():
    memory_mb, nice, sandbox_mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    apply_pillow_policy()  # every plugin loaded before the sandbox closes
    # eventlet in the parent may have made our socket non-blocking
    os.set_blocking(sys.stdin.fileno(), True)
    # the socket carries frames only: anything a library prints goes to stderr
    frames_in = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    frames_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Rendering yields the CPU to the gateway and storage on the same host,
    # so uploads are answered at once even while every core renders.
    os.nice(nice)
    try:
        report = confine(sandbox_mode)
    except SandboxUnavailable as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    _limit_memory(memory_mb)
    _send(frames_out, {"hello": report.as_dict()})
    serve(frames_in, frames_out)


if __name__ == "__main__":
    main()
