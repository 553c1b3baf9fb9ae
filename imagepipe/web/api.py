"""The JSON shapes of the HTTP API, built from storage records.

Every rendition has two URLs: ``url`` (``/images/<id>/<preset>``) always
names the current rendition and revalidates; ``versioned_url`` adds
``?v=<version>`` -- the first 64 bits of the rendition's SHA-256 -- and is
immutable, so a re-render gives it a new URL instead of leaving caches with
the old picture.  With a ``UrlSigner`` each also gets ``signed_url``.
"""
from urllib.parse import urlencode

from imagepipe.errors import NotFound

ORIGINAL = "original"
VERSION = "v"
VERSION_DIGITS = 16


def image_links(image_id, base_url=""):
    prefix = "{}/images/{}".format(base_url, image_id)
    return {"self": prefix, "original": prefix + "/original"}


def rendition_path(image_id, name):
    """The path of the bytes of ``name`` (a preset, or ``original``) of an image."""
    return "/images/{}/{}".format(image_id, name)


def rendition_version(variant):
    """A rendition's version: changes whenever its bytes do."""
    return variant["sha256"][:VERSION_DIGITS]


def stored_rendition(record, name):
    """The catalog's meta of ``original`` or of the rendition ``name``; NotFound if none."""
    if name == ORIGINAL:
        return record["original"]
    meta = record["variants"].get(name)
    if meta is None:
        raise NotFound("image {} has no rendition {!r}".format(record["id"], name))
    return meta


def image_status(record, base_url="", signer=None):
    """The public view of an image: what ``GET /images/<id>`` answers."""
    image_id = record["id"]
    links = image_links(image_id, base_url)
    original = record["original"]
    original_view = {
        "url": links["original"],
        "format": original["format"],
        "mime_type": original["mime_type"],
        "width": original["width"],
        "height": original["height"],
        "frames": original["frames"],
        "bytes": original["bytes"],
        "sha256": original["sha256"],
    }
    if signer is not None:
        # the original's URL is immutable already: its id is its content hash
        original_view["signed_url"] = base_url + signer.sign(rendition_path(image_id, ORIGINAL))
    return {
        "id": image_id,
        "status": record["status"],
        "original": original_view,
        "variants": {
            preset: rendition_view(image_id, preset, variant, base_url, signer)
            for preset, variant in sorted(record["variants"].items())
        },
        "error": record["error"],
        "attempts": record["attempts"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
        "links": links,
    }


def rendition_view(image_id, preset, variant, base_url="", signer=None):
    path = rendition_path(image_id, preset)
    version = rendition_version(variant)
    view = {
        "url": base_url + path,
        "version": version,
        "versioned_url": "{}{}?{}".format(base_url, path, urlencode({VERSION: version})),
        "format": variant["format"],
        "mime_type": variant["mime_type"],
        "width": variant["width"],
        "height": variant["height"],
        "bytes": variant["bytes"],
    }
    if signer is not None:
        view["signed_url"] = base_url + signer.sign(path, [(VERSION, version)])
    return view


def image_list(page, limit, base_url="", signer=None):
    """``GET /images``: a page of statuses, newest first, and the next page's link."""
    next_link = None
    if page["next"]:
        next_link = "{}/images?{}".format(base_url, urlencode({"limit": limit, "cursor": page["next"]}))
    return {"images": [image_status(record, base_url, signer) for record in page["images"]],
            "next": next_link}


def upload_accepted(record, base_url=""):
    """The 202 body of ``POST /upload``."""
    return {
        "id": record["id"],
        "status": record["status"],
        "links": image_links(record["id"], base_url),
    }


def error_body(code, message):
    return {"error": code, "message": message}
