"""What one image costs outside Pillow, measured in this process.

* ``message_sizes``: the AMQP message bodies one upload causes, by counting:
  the same calls the services make (``put_original``, the job event,
  ``claim``, ``complete`` with every rendition, the completion event),
  with real records from an ``ImageStore`` in a scratch folder, serialized
  with the serializer config.yaml names, through kombu as nameko does (with
  JSON, bytes become base64 strings; msgpack carries them raw).
  AMQP headers and framing are not included; the broker-measured octets are.
* ``step_times``: the time of the non-Pillow steps on the way -- serializing
  the bytes (dumps and loads, with the configured serializer and with JSON),
  SHA-256, a blob write with and without fsync, a whole ``put_original``.
"""
import io
import tempfile
import time
from dataclasses import asdict

from kombu import serialization

from bench import config as bench_config
from imagepipe.rendering.probe import probe
from imagepipe.rendering.render import render
from imagepipe.storage.blobs.files import FileBlobStore
from imagepipe.ids import content_sha256
from imagepipe.records import job_outcome
from imagepipe.settings import Settings
from imagepipe.storage.blobs import BlobSettings
from imagepipe.storage.direct import DirectBlobs, UploadGrants
from imagepipe.storage.store import ImageStore


def _dumps(payload, serializer):
    return serialization.dumps(payload, serializer=serializer)


def _size(payload, serializer):
    return len(_dumps(payload, serializer)[2])


def _store(folder):
    return ImageStore.from_settings(Settings.from_config({"STORAGE_ROOT": folder}))


def message_sizes(data, serializer=None):
    """[(message, body bytes, messages)] per upload of ``data``: the claim-check path, as the
    services run it (a message sent once per batch of uploads counts its share).

    Bytes go to the blob store under grants (``imagepipe.storage.direct``);
    the messages carry ids, grants, hashes and the image's record.
    """
    serializer = serializer or bench_config.serializer()
    presets = bench_config.presets()
    size = lambda payload: _size(payload, serializer)
    request = lambda *args: size({"args": list(args), "kwargs": {}})
    reply = lambda result: size({"result": result, "error": None})
    info = asdict(probe(data))
    renditions = render(data, presets)
    with tempfile.TemporaryDirectory(prefix="bench-costs-") as folder:
        store = _store(folder)
        blobs, _ = DirectBlobs.for_process(BlobSettings(), folder)
        batch = UploadGrants().batch
        grants = store.grant_original_uploads(batch)
        grant = grants[0]
        written = blobs.write(grant, io.BytesIO(data))
        record, created = store.register_original(grant["token"], *written, info)
        image_id = record["id"]
        outputs = sum(len(preset.formats) for preset in presets)
        claimed = store.claim(image_id, False, outputs)
        per_batch = 1 / batch  # the gateway asks for write grants a batch at a time
        messages = [
            ("gateway->storage grant_original_uploads (request, 1 per {} uploads)".format(batch),
             request(batch) * per_batch, per_batch),
            ("storage->gateway grant_original_uploads (reply: {} write grants, 1 per {} uploads)"
             .format(batch, batch), reply(grants) * per_batch, per_batch),
            ("gateway->storage register_original (request: grant, size, SHA-256, header facts)",
             request(grant["token"], *written, info, None, None), 1),
            ("storage->gateway register_original (reply)", reply([record, created]), 1),
            ("gateway event image_uploaded", size({"id": image_id}), 1),
            ("imaging->storage claim (request)", request(image_id, False, outputs), 1),
            ("storage->imaging claim (reply: record + read grant + write grants)", reply(claimed), 1),
        ]
        stored = []
        for rendition, rendition_grant in zip(renditions, claimed["renditions"]):
            length, sha256 = blobs.write(rendition_grant, io.BytesIO(rendition.data))
            stored.append({"preset": rendition.preset, "grant": rendition_grant["token"],
                           "bytes": length, "sha256": sha256,
                           "meta": {"format": rendition.format, "mime_type": rendition.mime_type,
                                    "width": rendition.width, "height": rendition.height,
                                    "rank": 0, "placeholder": rendition.placeholder,
                                    "color": rendition.color, "focus": None,
                                    "frames": rendition.frames}})
        messages += [
            ("imaging->storage complete (request: where each rendition was written)",
             request(image_id, stored, False), 1),
            ("storage->imaging complete (reply: the outcome)",
             reply(job_outcome(store.complete(image_id, stored))), 1),
            ("imaging event image_processed", size(
                {"id": image_id, "status": "done", "error": None, "changed": True, "has_callback": False,
                 "rendered": [p.name for p in presets], "render_seconds": {p.name: 0.05 for p in presets},
                 "seconds": 0.123}), 1),
        ]
    return messages


def summarize_messages(messages, original_bytes):
    """Totals per upload of ``message_sizes``' rows ``(message, bytes per upload, messages per upload)``."""
    total = round(sum(size for _, size, _ in messages))
    events = round(sum(size for name, size, _ in messages if " event " in name))
    return {"messages": round(sum(count for _, _, count in messages), 2), "body_bytes": total,
            "event_bytes": events,
            "original_bytes": original_bytes, "ratio_to_original": total / original_bytes}


def _timed(func, repeat=5):
    """Best-of-``repeat`` seconds of ``func()`` (the machine is noisy)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - started)
    return best


def step_times(data, serializer=None):
    """{step: milliseconds} for one original of ``data``."""
    serializer = serializer or bench_config.serializer()
    info = asdict(probe(data))
    request = {"args": [data, info], "kwargs": {}}
    steps = {"probe (header only)": _timed(lambda: probe(data))}
    for name in dict.fromkeys([serializer, "json"]):
        content_type, encoding, body = _dumps(request, name)
        steps["{} dumps".format(name)] = _timed(lambda: _dumps(request, name))
        steps["{} loads".format(name)] = _timed(lambda: serialization.loads(
            body, content_type, encoding, accept=[content_type]))
    steps["sha256"] = _timed(lambda: content_sha256(data))
    with tempfile.TemporaryDirectory(prefix="bench-costs-", dir=".") as folder:
        durable, fast = FileBlobStore(folder + "/a"), FileBlobStore(folder + "/b", fsync=False)
        counter = iter(range(10**6))
        steps["blob put, fsync"] = _timed(lambda: durable.put("k/{}".format(next(counter)), data))
        steps["blob put, no fsync"] = _timed(lambda: fast.put("k/{}".format(next(counter)), data))
        stores = iter([_store(folder + "/s{}".format(index)) for index in range(3)])
        steps["put_original (blob+catalog, fsync)"] = _timed(
            lambda: next(stores).put_original(data, info), 3)
    return {name: seconds * 1000 for name, seconds in steps.items()}
