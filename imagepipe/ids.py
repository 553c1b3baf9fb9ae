"""Image ids and the names that may appear in URLs and storage keys.

Ids derive from the content, so the same bytes uploaded twice get the same id
and are stored once.  Everything a client sends is checked against these
patterns before it is used, so nothing from a URL ever becomes a file path.
"""
import hashlib
import re

from imagepipe.errors import NotFound

IMAGE_ID_RE = re.compile(r"[0-9a-f]{32}")
PRESET_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# Path segments the HTTP API uses beside preset names.
RESERVED_NAMES = frozenset({"original", "events"})


def content_sha256(data):
    return hashlib.sha256(data).hexdigest()


def image_id_for(sha256_hex, tenant=None):
    """128 bits of the stored bytes' hash: collision-free in practice, short in URLs.

    With tenants the tenant is hashed in too: the same bytes uploaded by two
    tenants are two images, deduplicated only within each tenant.
    """
    if tenant is None:
        return sha256_hex[:32]
    return hashlib.sha256("tenant:{}:{}".format(tenant, sha256_hex).encode()).hexdigest()[:32]


def check_image_id(image_id):
    if not isinstance(image_id, str) or not IMAGE_ID_RE.fullmatch(image_id):
        raise NotFound("no image with id {!r}".format(str(image_id)[:80]))
    return image_id


def is_valid_preset_name(name):
    return (
        isinstance(name, str)
        and bool(PRESET_NAME_RE.fullmatch(name))
        and name not in RESERVED_NAMES
    )


def check_preset_name(name):
    if not is_valid_preset_name(name):
        raise NotFound("no rendition named {!r}".format(str(name)[:80]))
    return name
