"""Which stored format of a rendition answers a request: the ``Accept`` header decides.

``GET /images/<id>/<preset>`` answers the format with the highest q-value
the request's ``Accept`` gives it (RFC 9110 12.5.1: the most specific
matching media range sets a type's q; ``q=0`` means "not acceptable"); the
preset's own order (the catalog's ``rank``) breaks ties.  When the request
accepts none of the formats, the preset's *last* format answers anyway --
the fallback (JPEG in ``[avif, webp, jpeg]``) is the one most clients can
show, and an ``<img>`` must get an image rather than a 406.  No ``Accept``
header means ``*/*``.

``GET /images/<id>/<preset>.<format>`` names a format explicitly
(``rendition_path``); preset names cannot contain a dot, so such a path
never collides with a preset, ``original`` or ``events``.
"""
from imagepipe.errors import NotFound
from imagepipe.ids import check_preset_name
from imagepipe.rendering.presets import OUTPUT_FORMATS


def rendition_path(name):
    """``"thumb"`` -> ``("thumb", None)``; ``"thumb.webp"`` -> ``("thumb", "webp")``; else 404."""
    preset, dot, fmt = name.partition(".")
    check_preset_name(preset)
    if dot and fmt not in OUTPUT_FORMATS:
        raise NotFound("no rendition format {!r}; formats: {}".format(
            fmt[:20], ", ".join(OUTPUT_FORMATS)))
    return preset, (fmt if dot else None)


def negotiate(record, name, accept_header):
    """``(preset, format, meta, negotiated)`` of the rendition ``name`` names in ``record``.

    ``negotiated``: the format was chosen by ``Accept`` (the answer then
    varies with it), not named in the path.  404 for an unknown preset or a
    format the preset does not have.
    """
    preset, fmt = rendition_path(name)
    variant = record["variants"].get(preset)
    if variant is None:
        raise NotFound("image {} has no rendition {!r}".format(record["id"], preset))
    formats = variant.get("formats") or {variant["format"]: variant}
    negotiated = fmt is None
    if negotiated:
        fmt = choose_format(formats, accept_header)
    if fmt not in formats:
        raise NotFound("rendition {!r} of image {} has no {} format; it has {}".format(
            preset, record["id"], fmt, ", ".join(formats)))
    return preset, fmt, formats[fmt], negotiated


def parse_accept(header):
    """``[(type, subtype, q), ...]`` from an Accept header; malformed parts are skipped."""
    ranges = []
    for part in (header or "*/*").split(","):
        media, *params = part.strip().split(";")
        kind, slash, subtype = media.strip().lower().partition("/")
        if not slash or not kind or not subtype:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 0.0
                if q != q:  # nan
                    q = 0.0
        ranges.append((kind, subtype, q))
    return ranges


def quality(mime_type, ranges):
    """The q-value ``ranges`` give ``mime_type``: that of the most specific matching range."""
    kind, _, subtype = mime_type.partition("/")
    best_specificity, best_q = -1, 0.0
    for range_kind, range_subtype, q in ranges:
        if range_kind == kind and range_subtype == subtype:
            specificity = 2
        elif range_kind == kind and range_subtype == "*":
            specificity = 1
        elif range_kind == "*" and range_subtype == "*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity or (specificity == best_specificity and q > best_q):
            best_specificity, best_q = specificity, q
    return best_q


def choose_format(formats, accept_header):
    """The format (a key of ``formats``: ``{format: meta with mime_type and rank}``) to answer with."""
    ordered = sorted(formats, key=lambda fmt: (formats[fmt].get("rank", 0), fmt))
    ranges = parse_accept(accept_header)
    scored = [(quality(formats[fmt]["mime_type"], ranges), -position, fmt)
              for position, fmt in enumerate(ordered)]
    q, _, fmt = max(scored)
    return fmt if q > 0 else ordered[-1]
