"""What a page shows before a rendition arrives: a ThumbHash and the dominant colour.

ThumbHash (https://evanw.github.io/thumbhash/, Evan Wallace's algorithm,
implemented here from its description) rather than BlurHash: in ~25 bytes
it also carries the aspect ratio and alpha, its colours are more accurate,
and it needs no parameters (BlurHash's component counts are a per-site
choice).  Implemented here, not taken from PyPI: the Python packages of it
are unmaintained ports that loop over every pixel per coefficient (tens of
milliseconds a hash); this one computes the same DCT separably from a
thumbnail of at most ``HASH_SIDE`` pixels, which is all a hash of at most
7x7 coefficients can use.  tests/unit/test_placeholder.py checks it against
the independent ``thumbhash-python`` package.

The decoder is here for the tests; the web page has its own
(``static/app.js``), which the browser test holds to the same pixels.

Runs in the render worker, on pixels already decoded and resized (the
smallest rendition of a region), so a placeholder costs a few milliseconds.
"""
import base64
import math

from PIL import Image

# Longest side of the thumbnail hashed; the reference allows up to 100.
HASH_SIDE = 32
# Colours for the dominant-colour quantizer; the biggest cluster wins.
_CLUSTERS = 5


def placeholder_for(image):
    """``{"placeholder": base64 ThumbHash, "color": "#rrggbb"}`` for an RGB(A)/L image."""
    small = image.copy()
    small.thumbnail((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX)
    rgba = small.convert("RGBA")
    return {"placeholder": base64.b64encode(thumbhash(rgba)).decode("ascii"),
            "color": dominant_color(rgba)}


def dominant_color(rgba):
    """The centre of the largest colour cluster (median cut) of the opaque pixels."""
    opaque = rgba.getchannel("A").point(lambda alpha: 255 if alpha >= 128 else 0)
    if not opaque.getbbox():
        opaque = None  # fully transparent: every pixel counts
    rgb = rgba.convert("RGB")
    palette_image = rgb.quantize(_CLUSTERS, method=Image.Quantize.MEDIANCUT)
    counts = (palette_image.getcolors() if opaque is None
              else _counts_where(palette_image, opaque))
    _, index = max(counts)
    palette = palette_image.getpalette()
    return "#{:02x}{:02x}{:02x}".format(*palette[3 * index:3 * index + 3])


def _counts_where(palette_image, mask):
    masked = Image.new("P", palette_image.size, 255)
    masked.paste(palette_image, mask=mask)
    return [(count, index) for count, index in masked.getcolors() if index != 255] or \
        palette_image.getcolors()


# -- ThumbHash ------------------------------------------------------------------

def thumbhash(rgba):
    """The ThumbHash bytes of an RGBA image of at most 100x100 pixels."""
    w, h = rgba.size
    if w > 100 or h > 100:
        raise ValueError("{}x{} does not fit in 100x100".format(w, h))
    pixels = rgba.get_flattened_data()
    count = w * h
    alpha = [a / 255 for _, _, _, a in pixels]
    total_alpha = sum(alpha)
    avg = [0.0, 0.0, 0.0]
    for (r, g, b, _), weight in zip(pixels, alpha):
        avg[0] += weight / 255 * r
        avg[1] += weight / 255 * g
        avg[2] += weight / 255 * b
    if total_alpha > 0:
        avg = [value / total_alpha for value in avg]
    has_alpha = total_alpha < count
    l_limit = 5 if has_alpha else 7
    lx = max(1, _js_round(l_limit * w / max(w, h)))
    ly = max(1, _js_round(l_limit * h / max(w, h)))

    # RGBA -> LPQA, composited over the average colour
    l_chan, p_chan, q_chan = [], [], []
    for (r, g, b, _), weight in zip(pixels, alpha):
        r = avg[0] * (1 - weight) + weight / 255 * r
        g = avg[1] * (1 - weight) + weight / 255 * g
        b = avg[2] * (1 - weight) + weight / 255 * b
        l_chan.append((r + g + b) / 3)
        p_chan.append((r + g) / 2 - b)
        q_chan.append(r - g)

    l_dc, l_ac, l_scale = _encode_channel(l_chan, w, h, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _encode_channel(p_chan, w, h, 3, 3)
    q_dc, q_ac, q_scale = _encode_channel(q_chan, w, h, 3, 3)
    landscape = w > h
    header24 = (_js_round(63 * l_dc) | _js_round(31.5 + 31.5 * p_dc) << 6
                | _js_round(31.5 + 31.5 * q_dc) << 12 | _js_round(31 * l_scale) << 18
                | int(has_alpha) << 23)
    header16 = ((ly if landscape else lx) | _js_round(63 * p_scale) << 3
                | _js_round(63 * q_scale) << 9 | int(landscape) << 15)
    out = bytearray([header24 & 255, (header24 >> 8) & 255, header24 >> 16,
                     header16 & 255, header16 >> 8])
    factors = l_ac + p_ac + q_ac
    if has_alpha:
        a_dc, a_ac, a_scale = _encode_channel(alpha, w, h, 5, 5)
        out.append(_js_round(15 * a_dc) | _js_round(15 * a_scale) << 4)
        factors += a_ac
    start = len(out)
    out.extend(bytes((len(factors) + 1) // 2))
    for index, factor in enumerate(factors):
        out[start + (index >> 1)] |= _js_round(15 * factor) << ((index & 1) << 2)
    return bytes(out)


def _triangle(nx, ny):
    """The (cx, cy) ThumbHash keeps of an nx x ny DCT, in its order (DC first)."""
    return [(cx, cy) for cy in range(ny) for cx in range(nx) if cx * ny < nx * (ny - cy)]


def _encode_channel(values, w, h, nx, ny):
    """(dc, normalised ac factors, scale) of one channel's DCT, computed separably."""
    coefficients = _triangle(nx, ny)
    cos_x = [[math.cos(math.pi / w * cx * (x + 0.5)) for x in range(w)] for cx in range(nx)]
    cos_y = [[math.cos(math.pi / h * cy * (y + 0.5)) for y in range(h)] for cy in range(ny)]
    # row_sums[cx][y] = sum over x of value(x, y) * cos_x[cx][x]
    row_sums = [[0.0] * h for _ in range(nx)]
    for y in range(h):
        row = values[y * w:(y + 1) * w]
        for cx in range(nx):
            row_sums[cx][y] = math.fsum(v * c for v, c in zip(row, cos_x[cx]))
    dc, ac, scale = 0.0, [], 0.0
    for cx, cy in coefficients:
        f = sum(s * c for s, c in zip(row_sums[cx], cos_y[cy])) / (w * h)
        if cx or cy:
            ac.append(f)
            scale = max(scale, abs(f))
        else:
            dc = f
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale


def thumbhash_to_rgba(hash_bytes):
    """Decode a ThumbHash to ``(width, height, RGBA bytes)`` (at most 32x32), as the page does."""
    header24 = hash_bytes[0] | hash_bytes[1] << 8 | hash_bytes[2] << 16
    header16 = hash_bytes[3] | hash_bytes[4] << 8
    l_dc = (header24 & 63) / 63
    p_dc = ((header24 >> 6) & 63) / 31.5 - 1
    q_dc = ((header24 >> 12) & 63) / 31.5 - 1
    l_scale = ((header24 >> 18) & 31) / 31
    has_alpha = bool(header24 >> 23)
    p_scale = ((header16 >> 3) & 63) / 63
    q_scale = ((header16 >> 9) & 63) / 63
    landscape = bool(header16 >> 15)
    lx = max(3, (5 if has_alpha else 7) if landscape else header16 & 7)
    ly = max(3, header16 & 7 if landscape else (5 if has_alpha else 7))
    a_dc = (hash_bytes[5] & 15) / 15 if has_alpha else 1.0
    a_scale = (hash_bytes[5] >> 4) / 15 if has_alpha else 0.0
    start = 6 if has_alpha else 5
    index = 0

    def factors(nx, ny, scale):
        nonlocal index
        out = []
        for cx, cy in _triangle(nx, ny)[1:]:
            nibble = (hash_bytes[start + (index >> 1)] >> ((index & 1) << 2)) & 15
            out.append((nibble / 7.5 - 1) * scale)
            index += 1
        return list(zip(_triangle(nx, ny)[1:], out))

    l_ac = factors(lx, ly, l_scale)
    p_ac = factors(3, 3, p_scale * 1.25)
    q_ac = factors(3, 3, q_scale * 1.25)
    a_ac = factors(5, 5, a_scale) if has_alpha else []
    ratio = approximate_aspect_ratio(hash_bytes)
    w = _js_round(32 if ratio > 1 else 32 * ratio)
    h = _js_round(32 / ratio if ratio > 1 else 32)
    out = bytearray()
    for y in range(h):
        for x in range(w):
            fx = [math.cos(math.pi / w * (x + 0.5) * cx) for cx in range(7)]
            fy = [math.cos(math.pi / h * (y + 0.5) * cy) for cy in range(7)]
            l = l_dc + sum(f * fx[cx] * fy[cy] * 2 for (cx, cy), f in l_ac)
            p = p_dc + sum(f * fx[cx] * fy[cy] * 2 for (cx, cy), f in p_ac)
            q = q_dc + sum(f * fx[cx] * fy[cy] * 2 for (cx, cy), f in q_ac)
            a = a_dc + sum(f * fx[cx] * fy[cy] * 2 for (cx, cy), f in a_ac)
            b = l - 2 / 3 * p
            r = (3 * l - b + q) / 2
            g = r - q
            out.extend(max(0, _js_round(255 * min(1, value))) for value in (r, g, b, a))
    return w, h, bytes(out)


def _js_round(value):
    """JavaScript's Math.round (halves up), as the reference and the page use; not banker's."""
    return math.floor(value + 0.5)


def approximate_aspect_ratio(hash_bytes):
    has_alpha = bool(hash_bytes[2] & 0x80)
    landscape = bool(hash_bytes[4] & 0x80)
    lx = (5 if has_alpha else 7) if landscape else hash_bytes[3] & 7
    ly = hash_bytes[3] & 7 if landscape else (5 if has_alpha else 7)
    return lx / ly
