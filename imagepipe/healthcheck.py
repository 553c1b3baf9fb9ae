"""``python -m imagepipe.healthcheck [URL]``: a container's health probe.

Exits 0 when URL answers 2xx within the timeout, 1 otherwise (saying why on
stderr).  The image ships no curl; Docker's HEALTHCHECK and the compose file
run this.  URL defaults to ``HEALTHCHECK_URL``, else ``/health`` of the
process's metrics exporter on 127.0.0.1:9100 (``METRICS_ADDRESS=0.0.0.0:9100``,
the image's default); the gateway's own is ``http://127.0.0.1:8000/health``.
"""
import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9100/health"


def check(url, timeout=5.0):
    """None when ``url`` answers 2xx, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return None if 200 <= response.status < 300 else "answered {}".format(response.status)
    except urllib.error.HTTPError as exc:
        return "answered {}".format(exc.code)
    except (OSError, ValueError) as exc:  # refused, timed out, unresolvable, not a URL
        return "no answer: {}".format(getattr(exc, "reason", exc))


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else os.environ.get("HEALTHCHECK_URL") or DEFAULT_URL
    problem = check(url)
    if problem:
        print("unhealthy: {} {}".format(url, problem), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
