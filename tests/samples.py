"""Images the tests make with Pillow instead of reading them from a corpus.

Each function stands for a kind of file the real-world corpus
(tests/corpus.py) holds -- EXIF orientations, CMYK, 16-bit, LAB, bilevel
multi-page, palette and alpha variants, wide-gamut ICC profiles (also ones
large enough to be split over many JPEG segments), animations, MPO, truncated
data and header bombs -- so the unit, integration and browser suites run from
a bare clone.  The corpus suites run the same kinds of checks on real files.
"""
import io
import struct
import zlib

from PIL import Image, ImageCms, ImageDraw

ORIENTATION_TAG = 0x0112


def encode(image, fmt, **params):
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def picture(size=(160, 100)):
    """An RGB image with no symmetry, so flips and rotations show."""
    image = Image.linear_gradient("L").resize(size)
    ramp = Image.linear_gradient("L").rotate(90).resize(size)
    image = Image.merge("RGB", (image, ramp, Image.new("L", size, 40)))
    image.paste((255, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    return image


def saturated(size=(160, 100)):
    """Strong primaries side by side: what a colour-space conversion changes most."""
    image = Image.new("RGB", size)
    colours = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 255, 0), (0, 220, 220), (240, 0, 240)]
    width = size[0] // len(colours) + 1
    for index, colour in enumerate(colours):
        image.paste(colour, (index * width, 0, (index + 1) * width, size[1]))
    shade = Image.linear_gradient("L").rotate(90).resize(size)
    return Image.composite(image, Image.new("RGB", size, (20, 20, 20)), shade)


def exif_with_orientation(orientation):
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return exif.tobytes()


def with_orientation(image, orientation, fmt="JPEG"):
    """``image`` stored as is, tagged to be shown rotated/flipped (EXIF 1-8)."""
    return encode(image, fmt, quality=95, exif=exif_with_orientation(orientation))


# -- colour modes -----------------------------------------------------------------

def cmyk_tiff(image=None):
    """A JPEG-compressed CMYK TIFF (the print world's usual export)."""
    return encode((image or picture()).convert("CMYK"), "TIFF", compression="jpeg")


def dark_16bit_tiff(size=(64, 64), low=291, high=694):
    """A 16-bit grayscale TIFF whose values span only low..high of 65535.

    Scaled to 8 bits it stays dark; clipped (Pillow's plain convert) it turns white.
    """
    ramp = Image.linear_gradient("L").resize(size).convert("I")
    return encode(ramp.point(lambda value: low + (high - low) * value / 255).convert("I;16"), "TIFF")


def lab_tiff(image=None):
    """A CIELAB TIFF converted properly (ImageCms) from an sRGB picture."""
    srgb_to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    return encode(ImageCms.applyTransform(image or picture((128, 128)), srgb_to_lab), "TIFF")


def bilevel_multipage_tiff(size=(1448, 2048), pages=3):
    """Mode "1" pages, CCITT group 4, like a scanned fax."""
    frames = []
    for page in range(pages):
        frame = Image.new("1", size, 1)
        draw = ImageDraw.Draw(frame)
        for row in range(page * 40, size[1], 160):
            draw.rectangle((size[0] // 8, row, size[0] * 7 // 8, row + 60), fill=0)
        frames.append(frame)
    return encode(frames[0], "TIFF", compression="group4", save_all=True, append_images=frames[1:])


def gray_jpeg(size=(128, 128)):
    return encode(picture(size).convert("L"), "JPEG", quality=92)


def transparent_rgba(size=(128, 96)):
    """RGBA with fully transparent, graded and opaque bands."""
    image = picture(size).convert("RGBA")
    alpha = Image.linear_gradient("L").rotate(-90).resize(size)
    alpha.paste(0, (0, 0, size[0] // 5, size[1]))
    alpha.paste(255, (size[0] * 4 // 5, 0, size[0], size[1]))
    image.putalpha(alpha)
    return image


def palette_with_transparency(size=(128, 96)):
    """A palette PNG with one fully transparent index (``tRNS``)."""
    image = picture(size).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 3, size[1]), fill=0)
    return encode(image, "PNG", transparency=0)


def palette_bmp(size=(128, 96)):
    """An 8-bit palette BMP without transparency."""
    return encode(picture(size).convert("P", palette=Image.Palette.ADAPTIVE, colors=200), "BMP")


def rgba_bitfields_bmp(image=None):
    """A 32-bit BMP with an alpha mask (BITMAPV4HEADER, BI_BITFIELDS).

    Pillow writes RGBA BMPs without the alpha mask (read back as RGB), so the
    header is written here.
    """
    image = image or transparent_rgba()
    width, height = image.size
    pixels = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).tobytes("raw", "BGRA")
    header = struct.pack("<IiiHHIIiiII", 108, width, height, 1, 32, 3, len(pixels), 2835, 2835, 0, 0)
    header += struct.pack("<IIII", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)
    header += b"BGRs" + bytes(36 + 12)  # colour space, endpoints, gamma
    offset = 14 + len(header)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + pixels


# -- ICC profiles ---------------------------------------------------------------------

# Adobe RGB (1998) primaries, adapted to the D50 connection space (s15Fixed16 XYZ)
ADOBE_RGB_COLORANTS = {
    b"rXYZ": (0.60974, 0.31111, 0.01947),
    b"gXYZ": (0.20528, 0.62567, 0.06087),
    b"bXYZ": (0.14919, 0.06322, 0.74457),
}


def _s15fixed16(value):
    return struct.pack(">i", round(value * 65536))


def _mluc(text):
    encoded = text.encode("utf-16-be")
    return b"mluc" + bytes(4) + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(encoded), 28) + encoded


def wide_gamut_profile(padding=0):
    """An RGB matrix/TRC ICC profile with Adobe RGB primaries (sRGB's tone curves).

    ``padding`` bytes of a private tag make the profile big: JPEG stores a
    profile over 65519 bytes split across several APP2 segments.
    """
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    (count,) = struct.unpack(">I", srgb[128:132])
    tags = []
    for index in range(count):
        signature, offset, length = struct.unpack(">4sII", srgb[132 + 12 * index:144 + 12 * index])
        data = srgb[offset:offset + length]
        if signature in ADOBE_RGB_COLORANTS:
            data = b"XYZ " + bytes(4) + b"".join(map(_s15fixed16, ADOBE_RGB_COLORANTS[signature]))
        elif signature == b"desc":
            data = _mluc("imagepipe test: Adobe RGB primaries")
        tags.append((signature, data))
    if padding:
        tags.append((b"zzpd", b"zzpd" + bytes(4) + bytes(padding)))
    table_end = 128 + 4 + 12 * len(tags)
    table, blobs, offsets = b"", b"", {}
    for signature, data in tags:
        if data not in offsets:  # tags may share data (the three TRCs do)
            offsets[data] = table_end + len(blobs)
            blobs += data + bytes(-len(data) % 4)
        table += struct.pack(">4sII", signature, offsets[data], len(data))
    size = table_end + len(blobs)
    header = struct.pack(">I", size) + srgb[4:84] + bytes(16) + srgb[100:128]  # no profile ID
    return header + struct.pack(">I", len(tags)) + table + blobs


def to_profile(image, profile_bytes):
    """``image``'s sRGB pixels expressed in the given profile (so it displays the same)."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(profile_bytes))
    return ImageCms.profileToProfile(image, ImageCms.createProfile("sRGB"), profile)


# -- animation and multi-frame --------------------------------------------------------

def frames(size=(96, 64), count=3):
    """Distinct frames: a picture, then shifted and recoloured versions of it."""
    first = picture(size)
    return [first] + [Image.eval(first.rotate(180 * (index % 2)), lambda value, i=index: (value + 70 * i) % 256)
                      for index in range(1, count)]


def animation(fmt, size=(96, 64), count=3):
    sequence = frames(size, count)
    params = {"save_all": True, "append_images": sequence[1:]}
    if fmt != "TIFF":
        params["duration"] = 100
    if fmt in ("WEBP", "AVIF"):
        params["quality"] = 90
    return encode(sequence[0], fmt, **params)


def mpo(size=(160, 120)):
    """A multi-picture (stereo) JPEG: Pillow reports MPO; the pipeline treats it as JPEG."""
    left = picture(size)
    return encode(left, "MPO", save_all=True, append_images=[left.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])


# -- broken and hostile files -------------------------------------------------------------

def truncated(data, keep=0.5):
    """The first part of a file: its header intact, its data cut short."""
    return data[: int(len(data) * keep)]


def _png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_bomb(width=100_000, height=100_000):
    """A valid PNG signature and IHDR claiming width x height, then almost no data."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    data = _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + header + data + _png_chunk(b"IEND", b"")


def bmp_header_bomb(width=60_000, height=60_000):
    """A BMP header claiming a huge 24-bit bitmap, followed by a few bytes."""
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 14 + 40) + header + bytes(16)


def gif_header_bomb(width=60_000, height=60_000):
    """A GIF whose logical screen and only frame are huge, with 1 byte of LZW data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def eps_named_jpeg():
    """A PostScript file, as it might arrive named photo.jpg."""
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
            b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")
