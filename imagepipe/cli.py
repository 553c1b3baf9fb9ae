"""``python -m imagepipe``: upload images and follow them from a terminal; operate the store.

    python -m imagepipe upload PATH... [--wait] [--url URL] [--api-key KEY]
    python -m imagepipe status ID [--url URL] [--api-key KEY]
    python -m imagepipe delete ID... [--url URL] [--api-key KEY]
    python -m imagepipe reprocess [--all] [--max-waiting N] [--config config.yaml]
    python -m imagepipe prune [--delete] [--config config.yaml]
    python -m imagepipe scale [--config config.yaml]

``scale`` is the one command that is not a client: it runs imaging
processes that follow the job queue (``imagepipe.scaling``; needs the
services' requirements).

Folders are walked recursively for files with an image extension; files named
on the command line are sent whatever their name (the server decides by
content).  ``--wait`` follows each accepted image on its live status stream
(``GET /images/<id>/events``, server-sent events) -- or, from a gateway
without one (404/405), by polling ``GET /images/<id>`` -- and prints each
rendition's URL.  The exit status is 1 if any file was rejected, failed or
could not be sent.

``upload``, ``status`` and ``delete`` are a plain HTTP client (requests,
tqdm): they need neither nameko nor a broker.  ``reprocess`` and ``prune``
act on every stored image, which is an operator's business, not an API
client's: they call storage over AMQP (``services.operator``, imported only
for them) with the broker named in ``config.yaml``.  Their loops take any
storage proxy, so they run from ``nameko shell`` too::

    >>> from imagepipe.cli import reprocess_all, prune_all
    >>> reprocess_all(n.rpc.storage)              # every=True: every preset again
"""
import argparse
import json
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import requests
from tqdm import tqdm

from imagepipe.errors import PipelineError
from imagepipe.records import FINISHED
from imagepipe.storage.upkeep import DEFAULT_MAX_WAITING

IMAGE_EXTENSIONS = frozenset((
    ".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp", ".avif",
))
DEFAULT_URL = "http://localhost:8000"
# the server sends a keep-alive at least every LIVE_RECHECK_INTERVAL (15 s)
STREAM_READ_TIMEOUT = 60
POLL_INTERVAL = 0.5
PARALLEL_WAITS = 8
# how long a reprocess run waits when the job queue is full before asking again
QUEUE_FULL_PAUSE = 0.5


class CliError(Exception):
    """A failure to report in one line (no traceback) with exit status 1."""


class Client:
    def __init__(self, base_url, api_key=None, timeout=60):
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = "Bearer " + api_key

    def url(self, path):
        """An absolute URL for a path or link from the API (links may be relative)."""
        return urljoin(self.base_url, path)

    def upload(self, path):
        """``(HTTP status, JSON body)`` of uploading the file at ``path``."""
        with open(path, "rb") as image:
            response = self._request("POST", "upload", files={"image": (Path(path).name, image)})
        return response.status_code, _json(response)

    def status(self, image_id):
        response = self._request("GET", "images/" + image_id)
        body = _json(response)
        if response.status_code != 200:
            raise CliError(_describe_error(response.status_code, body))
        return body

    def delete(self, image_id):
        """``(HTTP status, JSON body or None)`` of deleting an image."""
        response = self._request("DELETE", "images/" + image_id)
        return response.status_code, None if response.status_code == 204 else _json(response)

    def wait(self, image_id, timeout):
        """The image's status once it is done or failed (or raise CliError at ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._follow_events(image_id, deadline)
            if status is None:  # no live status on this gateway
                return self._poll(image_id, deadline)
            if status["status"] in FINISHED:
                return status
            # the stream ended early (server restart, its maximum age): reconnect
        raise CliError("image {} did not finish within {:g} s".format(image_id, timeout))

    def _follow_events(self, image_id, deadline):
        """Read the event stream; the last status seen, or None without one."""
        last = None
        try:
            with self.session.get(
                    self.url("images/{}/events".format(image_id)), stream=True,
                    headers={"Accept": "text/event-stream"},
                    timeout=(self.timeout, STREAM_READ_TIMEOUT)) as response:
                if response.status_code in (404, 405):
                    # no events route (an unknown image is a 404 to polling too)
                    return None
                if response.status_code != 200:
                    raise CliError(_describe_error(response.status_code, _json(response)))
                for event, data in parse_events(_lines(response)):
                    if event == "status":
                        last = json.loads(data)
                        if last["status"] in FINISHED or time.monotonic() > deadline:
                            break
        except (requests.ConnectionError, requests.Timeout) as exc:
            if time.monotonic() > deadline:
                raise CliError("lost the status stream of {}: {}".format(image_id, exc)) from None
            time.sleep(POLL_INTERVAL)  # then reconnect
        return last or {"status": "unknown"}

    def _poll(self, image_id, deadline):
        while True:
            status = self.status(image_id)
            if status["status"] in FINISHED:
                return status
            if time.monotonic() > deadline:
                raise CliError("image {} is still {}".format(image_id, status["status"]))
            time.sleep(POLL_INTERVAL)

    def _request(self, method, path, **kwargs):
        try:
            return self.session.request(method, self.url(path), timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise CliError("cannot reach {}: {}".format(self.base_url, exc)) from None


def _json(response):
    try:
        body = response.json()
    except ValueError:
        return {"error": "http_{}".format(response.status_code), "message": response.text[:200]}
    return body if isinstance(body, dict) else {"value": body}


def _describe_error(status_code, body):
    return "{} {}: {}".format(status_code, body.get("error", "error"), body.get("message", ""))


def _lines(response):
    """Text lines of a streamed response, as they arrive (not in 512-byte reads)."""
    pending = b""
    for chunk in response.iter_content(chunk_size=None):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8")
    if pending:
        yield pending.decode("utf-8")


def parse_events(lines):
    """Server-sent events from text lines: yields ``(event name, data)``.

    Follows the SSE format: ``event:``/``data:`` fields, several ``data``
    lines joined with newlines, comments (``:``) ignored, an event ends at a
    blank line; the default event name is ``message``.
    """
    event, data = None, []
    for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, field_value = line.partition(":")
        field_value = field_value[1:] if field_value.startswith(" ") else field_value
        if field == "event":
            event = field_value
        elif field == "data":
            data.append(field_value)


def collect_files(paths):
    """``(files to upload, number of files skipped)`` for the given paths."""
    files, skipped = [], 0
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for found in sorted(candidate for candidate in path.rglob("*") if candidate.is_file()):
                if found.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(found)
                else:
                    skipped += 1
        elif path.is_file():
            files.append(path)
        else:
            raise CliError("no such file or folder: {}".format(given))
    return files, skipped


def upload_command(args, client, out, err):
    files, skipped = collect_files(args.paths)
    if skipped:
        print("skipped {} file(s) without an image extension".format(skipped), file=err)
    if not files:
        raise CliError("nothing to upload")
    results = []  # (path, accepted body or None, error line or None)
    for path in tqdm(files, desc="uploading", unit="file", file=err, disable=args.quiet):
        try:
            code, body = client.upload(path)
        except (CliError, OSError) as exc:
            results.append((path, None, str(exc)))
            continue
        if code == 202:
            results.append((path, body, None))
        else:
            results.append((path, None, "rejected ({}): {}".format(
                body.get("error", code), body.get("message", ""))))
    finals = {}
    accepted = [body["id"] for _path, body, _error in results if body]
    if args.wait and accepted:
        finals = wait_for_all(client, accepted, args.timeout, err, args.quiet)
    return report(results, finals, client, out)


def wait_for_all(client, image_ids, timeout, err, quiet):
    """``{id: final status or CliError}`` -- every image followed at once."""
    finals = {}
    with tqdm(total=len(set(image_ids)), desc="processing", unit="image", file=err,
              disable=quiet) as progress, \
            ThreadPoolExecutor(max_workers=PARALLEL_WAITS) as pool:
        futures = {image_id: pool.submit(client.wait, image_id, timeout)
                   for image_id in dict.fromkeys(image_ids)}
        for image_id, future in futures.items():
            try:
                finals[image_id] = future.result()
            except CliError as exc:
                finals[image_id] = exc
            progress.update(1)
    return finals


def report(results, finals, client, out):
    """Print one block per file; return the exit status."""
    failures = 0
    for path, body, error in results:
        if error:
            failures += 1
            print("{}: {}".format(path, error), file=out)
            continue
        final = finals.get(body["id"])
        if final is None:
            print("{}: {} {}".format(path, body["id"], body["status"]), file=out)
        elif isinstance(final, CliError):
            failures += 1
            print("{}: {} error: {}".format(path, body["id"], final), file=out)
        elif final["status"] == "failed":
            failures += 1
            print("{}: {} failed: {}".format(path, body["id"], final.get("error")), file=out)
        else:
            print("{}: {} done".format(path, body["id"]), file=out)
            for preset, variant in sorted(final.get("variants", {}).items()):
                print("  {}: {}".format(preset, client.url(variant["url"])), file=out)
    return 1 if failures else 0


def status_command(args, client, out, err):
    print(json.dumps(client.status(args.image_id), indent=2, sort_keys=True), file=out)
    return 0


def delete_command(args, client, out, err):
    failures = 0
    for image_id in args.image_ids:
        code, body = client.delete(image_id)
        if code == 204:
            print("{}: deleted".format(image_id), file=out)
        else:
            failures += 1
            print("{}: {}".format(image_id, _describe_error(code, body)), file=out)
    return 1 if failures else 0


def reprocess_all(storage, every=False, max_waiting=DEFAULT_MAX_WAITING, err=None, quiet=False,
                  pause=QUEUE_FULL_PAUSE, sleep=time.sleep, cursor=None):
    """Put a reprocess job on the job queue for every stored image that needs one; return how many.

    Storage enqueues only while the job queue holds fewer than
    ``max_waiting`` jobs (``imagepipe.storage.upkeep``), so new uploads keep
    their place; when it is full this waits ``pause`` seconds and asks again.
    Images are taken in id order; ``cursor`` (an id) resumes a run after it.
    (A new run does not know which jobs an earlier one left waiting: an image
    whose job has not run yet gets a second one, which is harmless.)
    """
    plan = storage.reprocess_plan(every)
    enqueued = 0
    with tqdm(total=plan["images"], desc="reprocessing", unit="image", file=err or sys.stderr,
              disable=quiet) as progress:
        while True:
            step = storage.reprocess_batch(cursor, every, max_waiting)
            enqueued += step["enqueued"]
            progress.update(step["enqueued"])
            cursor = step["cursor"]
            if step["finished"]:
                return enqueued
            if not step["enqueued"]:
                sleep(pause)  # the job queue is full: let imaging catch up


def prune_all(storage, delete=False, out=None, err=None, quiet=False):
    """List renditions no preset asks for any more (a preset, or one of its formats,
    removed); with ``delete``, delete them.

    Returns ``{"<preset>.<format>": {"renditions", "bytes"}}`` as found before deleting.
    """
    out = out or sys.stdout
    stale = storage.stale_renditions()
    for name, found in sorted(stale.items()):
        print("{}: {} renditions, {} bytes".format(name, found["renditions"], found["bytes"]),
              file=out)
    if not stale:
        print("no renditions of presets that no longer exist", file=out)
    if delete and stale:
        total = sum(found["renditions"] for found in stale.values())
        with tqdm(total=total, desc="pruning", unit="rendition", file=err or sys.stderr,
                  disable=quiet) as progress:
            while True:
                step = storage.prune_renditions()
                progress.update(step["pruned"])
                if not step["remaining"] or not step["pruned"]:
                    break
        print("deleted {} renditions".format(total), file=out)
    return stale


def reprocess_command(args, client, out, err):
    with _operator_storage(args) as storage:
        enqueued = reprocess_all(storage, args.all, args.max_waiting, err, args.quiet)
    print("enqueued {} reprocess jobs".format(enqueued), file=out)
    return 0


def prune_command(args, client, out, err):
    with _operator_storage(args) as storage:
        prune_all(storage, args.delete, out, err, args.quiet)
    return 0


def _operator_storage(args):
    if not Path(args.config).is_file():
        raise CliError("no config file {} (--config, or $IMAGEPIPE_CONFIG)".format(args.config))
    # nameko's imports warn about eventlet's and pkg_resources' futures: not the operator's news
    warnings.filterwarnings("ignore", message="(?s).*(Eventlet|pkg_resources) is deprecated")
    try:
        from services.operator import storage_rpc  # nameko, only for operator commands
    except ImportError as exc:  # `pip install .` installs the HTTP client alone
        raise CliError("{} needs the services' code and nameko ({}): run it from the "
                       "repository or in a service container, e.g. docker compose exec storage "
                       "python -m imagepipe {}".format(args.command, exc, args.command)) from None

    return storage_rpc(args.config, args.amqp_uri)


def build_parser():
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", default=os.environ.get("IMAGEPIPE_URL", DEFAULT_URL),
                        help="gateway URL (default: $IMAGEPIPE_URL or %(default)s)")
    server.add_argument("--api-key", default=os.environ.get("IMAGEPIPE_API_KEY"),
                        help="API key (default: $IMAGEPIPE_API_KEY)")
    parser = argparse.ArgumentParser(prog="imagepipe", description="Upload images to imagepipe; operate its store.")
    commands = parser.add_subparsers(dest="command", required=True)
    upload = commands.add_parser("upload", parents=[server],
                                 help="upload files and folders of images")
    upload.add_argument("paths", nargs="+", metavar="PATH")
    upload.add_argument("--wait", action="store_true",
                        help="wait until each image is done and print its rendition URLs")
    upload.add_argument("--timeout", type=float, default=600,
                        help="seconds to wait for each image with --wait (default %(default)s)")
    upload.add_argument("--quiet", action="store_true", help="no progress bars")
    upload.set_defaults(run=upload_command)
    status = commands.add_parser("status", parents=[server], help="print an image's status as JSON")
    status.add_argument("image_id", metavar="ID")
    status.set_defaults(run=status_command)
    delete = commands.add_parser("delete", parents=[server],
                                 help="delete images: the original, every rendition, the record")
    delete.add_argument("image_ids", nargs="+", metavar="ID")
    delete.set_defaults(run=delete_command)

    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--config", default=os.environ.get("IMAGEPIPE_CONFIG", "config.yaml"),
                        help="the services' config.yaml, for the broker and serializer "
                             "(default: $IMAGEPIPE_CONFIG or %(default)s)")
    broker.add_argument("--amqp-uri", help="the broker, instead of the config's AMQP_URI")
    broker.add_argument("--quiet", action="store_true", help="no progress bars")
    reprocess = commands.add_parser(
        "reprocess", parents=[broker],
        help="render the presets stored images lack (operators: talks to the broker)")
    reprocess.add_argument("--all", action="store_true",
                           help="render every preset of every done image again")
    reprocess.add_argument("--max-waiting", type=int, default=DEFAULT_MAX_WAITING,
                           help="enqueue only while fewer jobs than this wait in the job "
                                "queue (default %(default)s)")
    reprocess.set_defaults(run=reprocess_command)
    prune = commands.add_parser(
        "prune", parents=[broker],
        help="list renditions of presets that no longer exist (operators: talks to the broker)")
    prune.add_argument("--delete", action="store_true", help="delete them too")
    prune.set_defaults(run=prune_command)
    scale = commands.add_parser(
        "scale", help="run imaging processes that follow the job queue (SCALE_* in config.yaml)")
    scale.add_argument("--config", default="config.yaml", help="nameko config (default %(default)s)")
    scale.set_defaults(run=scale_command)
    return parser


def scale_command(args, client, out, err):
    from imagepipe.scaling.scaler import main as run_scaler  # the services' dependencies

    return run_scaler(args.config)


def main(argv=None, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    client = Client(args.url, args.api_key) if "url" in args else None
    try:
        return args.run(args, client, out, err)
    except CliError as exc:
        print("imagepipe: {}".format(exc), file=err)
        return 1
    except PipelineError as exc:  # storage refused an operator command
        print("imagepipe: {} ({})".format(exc.message, exc.code), file=err)
        return 1
