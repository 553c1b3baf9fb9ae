"""The JSON shapes of the HTTP API, built from storage records.

Every rendition -- the preset's negotiated URL and each format's own -- has
two URLs: ``url`` always names the current rendition and revalidates;
``versioned_url`` adds ``?v=<version>`` (it changes whenever the bytes do)
and is immutable, so a re-render gives it a new URL instead of leaving
caches with the old picture.  With a ``UrlSigner`` each also gets
``signed_url``.
"""
import hashlib
from urllib.parse import urlencode

ORIGINAL = "original"
VERSION = "v"
VERSION_DIGITS = 16


def image_links(image_id, base_url=""):
    prefix = "{}/images/{}".format(base_url, image_id)
    return {"self": prefix, "original": prefix + "/original"}


def rendition_version(meta):
    """The version of what one URL serves: 64 bits of the SHA-256 of a format's bytes --
    or, for a preset's negotiated URL (``meta`` with ``formats``), of all its formats'."""
    formats = meta.get("formats")
    if not formats:
        return meta["sha256"][:VERSION_DIGITS]
    listed = "\n".join("{}:{}".format(fmt, formats[fmt]["sha256"]) for fmt in sorted(formats))
    return hashlib.sha256(listed.encode()).hexdigest()[:VERSION_DIGITS]


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
        original_view["signed_url"] = base_url + signer.sign(rendition_url(image_id, ORIGINAL))
    return {
        "id": image_id,
        "status": record["status"],
        "original": original_view,
        "variants": {
            preset: rendition_status(image_id, preset, variant, base_url, signer)
            for preset, variant in sorted(record["variants"].items())
        },
        "focus": _point(record.get("focus")),
        "error": record["error"],
        "attempts": record["attempts"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
        "links": links,
    }


def rendition_url(image_id, preset, fmt=None, base_url=""):
    """The negotiated URL of a rendition, or with ``fmt`` that format's own URL."""
    return "{}/images/{}/{}{}".format(base_url, image_id, preset, "." + fmt if fmt else "")


def rendition_status(image_id, preset, variant, base_url="", signer=None):
    """A rendition in the status: its preferred format's fields, every format, the placeholder."""
    formats = variant.get("formats") or {variant["format"]: variant}
    return dict(
        _urls(rendition_url(image_id, preset), rendition_version(dict(variant, formats=formats)),
              base_url, signer),
        format=variant["format"],
        mime_type=variant["mime_type"],
        width=variant["width"],
        height=variant["height"],
        bytes=variant["bytes"],
        formats={
            fmt: dict(
                _urls(rendition_url(image_id, preset, fmt), rendition_version(meta), base_url,
                      signer),
                mime_type=meta["mime_type"],
                width=meta["width"],
                height=meta["height"],
                bytes=meta["bytes"],
                frames=meta.get("frames") or 1,
            )
            for fmt, meta in formats.items()
        },
        placeholder=variant.get("placeholder"),
        color=variant.get("color"),
        focus=_point(variant.get("focus")),
    )


def _urls(path, version, base_url, signer):
    """``url``, ``version``, ``versioned_url`` (and ``signed_url``) of one rendition URL."""
    urls = {"url": base_url + path, "version": version,
            "versioned_url": "{}{}?{}".format(base_url, path, urlencode({VERSION: version}))}
    if signer is not None:
        urls["signed_url"] = base_url + signer.sign(path, [(VERSION, version)])
    return urls


def _point(point):
    return None if not point else {"x": point[0], "y": point[1]}


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
