"""Signing deliveries, and what a receiver does to check them.

When ``WEBHOOK_SECRET`` is set::

    X-Imagepipe-Timestamp: <unix seconds>
    X-Imagepipe-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

The timestamp is part of the signed material, so a receiver that rejects old
timestamps cannot be fed a replayed delivery.
"""
import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Imagepipe-Signature"
TIMESTAMP_HEADER = "X-Imagepipe-Timestamp"


def signature(secret, timestamp, body):
    """``sha256=<hex>`` over ``b"<timestamp>." + body``."""
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(secret, timestamp, body, header, now=None, tolerance=300):
    """What a receiver does: constant-time compare, and refuse stale timestamps."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance and hmac.compare_digest(signature(secret, timestamp, body), header or "")


def delivery_id(record, url):
    """One per (image, outcome, URL): what is delivered once (imagepipe.storage.deliveries)."""
    material = "{}|{}|{}".format(record["id"], record["status"], url)
    return hashlib.sha256(material.encode()).hexdigest()[:32]

