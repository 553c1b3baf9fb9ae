"""The JSON shapes of the HTTP API, built from storage records."""
from urllib.parse import urlencode


def image_links(image_id, base_url=""):
    prefix = "{}/images/{}".format(base_url, image_id)
    return {"self": prefix, "original": prefix + "/original"}


def image_status(record, base_url=""):
    """The public view of an image: what ``GET /images/<id>`` answers."""
    image_id = record["id"]
    links = image_links(image_id, base_url)
    original = record["original"]
    return {
        "id": image_id,
        "status": record["status"],
        "original": {
            "url": links["original"],
            "format": original["format"],
            "mime_type": original["mime_type"],
            "width": original["width"],
            "height": original["height"],
            "frames": original["frames"],
            "bytes": original["bytes"],
            "sha256": original["sha256"],
        },
        "variants": {
            preset: rendition_status(image_id, preset, variant, base_url)
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


def rendition_status(image_id, preset, variant, base_url=""):
    """A rendition in the status: its preferred format's fields, every format, the placeholder."""
    formats = variant.get("formats") or {variant["format"]: variant}
    return {
        "url": rendition_url(image_id, preset, base_url=base_url),
        "format": variant["format"],
        "mime_type": variant["mime_type"],
        "width": variant["width"],
        "height": variant["height"],
        "bytes": variant["bytes"],
        "formats": {
            fmt: {
                "url": rendition_url(image_id, preset, fmt, base_url),
                "mime_type": meta["mime_type"],
                "width": meta["width"],
                "height": meta["height"],
                "bytes": meta["bytes"],
                "frames": meta.get("frames") or 1,
            }
            for fmt, meta in formats.items()
        },
        "placeholder": variant.get("placeholder"),
        "color": variant.get("color"),
        "focus": _point(variant.get("focus")),
    }


def _point(point):
    return None if not point else {"x": point[0], "y": point[1]}


def image_list(page, limit, base_url=""):
    """``GET /images``: a page of statuses, newest first, and the next page's link."""
    next_link = None
    if page["next"]:
        next_link = "{}/images?{}".format(base_url, urlencode({"limit": limit, "cursor": page["next"]}))
    return {"images": [image_status(record, base_url) for record in page["images"]],
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
