"""Deterministic, photo-like JPEGs for the benchmark (no downloads).

Each image is built from its seed alone with Python's ``random`` (Pillow's
own noise effect uses C ``rand()`` and is not reproducible): a smooth
gradient sky, soft-edged shapes, mid-frequency texture and per-pixel grain.
The grain is what makes JPEG sizes photo-like (~4 MB for 12 MP at q90, where
a clean synthetic image would compress to a few hundred kB and decode
unrealistically fast).  Files are cached under ``bench/out/images``.
"""
import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

GENERATOR_VERSION = 1
QUALITY = 90
LARGE = (4000, 3000)       # 12 MP
SMALL = (1600, 1200)       # 2 MP
HUGE = (8660, 5773)        # 50 MP, just under MAX_PIXELS
GRAIN = 13                 # +- per-pixel noise
TEXTURE = 24               # +- mid-frequency noise


@dataclass(frozen=True)
class BenchImage:
    path: Path
    width: int
    height: int
    size: int

    @property
    def megapixels(self):
        return self.width * self.height / 1e6

    def read(self):
        return self.path.read_bytes()


def photo_like(seed, width, height, quality=QUALITY):
    """JPEG bytes of a reproducible photo-like image."""
    rng = random.Random(seed)
    image = _gradient(rng, width, height)
    image = _shapes(rng, image)
    image = _add_noise(rng, image, _noise(rng, width, height, 8), TEXTURE)
    image = _add_noise(rng, image, _noise(rng, width, height, 1), GRAIN)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _gradient(rng, width, height):
    corners = Image.new("RGB", (3, 3))
    corners.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(9)])
    return corners.resize((width, height), Image.Resampling.BICUBIC)


def _shapes(rng, image):
    # drawn at 1/4 size, enlarged and blurred: soft edges, as out of focus
    width, height = image.size
    small = image.resize((width // 4, height // 4), Image.Resampling.BOX)
    draw = ImageDraw.Draw(small)
    sw, sh = small.size
    for _ in range(rng.randrange(25, 45)):
        x, y = rng.randrange(sw), rng.randrange(sh)
        r = rng.randrange(max(4, sw // 40), max(5, sw // 5))
        color = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r * rng.uniform(0.5, 1.5)), fill=color)
        else:
            points = [(x + rng.randint(-r, r), y + rng.randint(-r, r)) for _ in range(rng.randrange(3, 7))]
            draw.polygon(points, fill=color)
    small = small.filter(ImageFilter.GaussianBlur(1.5))
    return small.resize((width, height), Image.Resampling.BICUBIC)


def _noise(rng, width, height, cell):
    """Uniform RGB noise at 1/cell resolution, smoothly enlarged."""
    w, h = max(1, width // cell), max(1, height // cell)
    noise = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    if cell > 1:
        noise = noise.resize((width, height), Image.Resampling.BICUBIC)
    return noise


def _add_noise(rng, image, noise, amplitude):
    # noise 0..255 -> 0..2A, then image + noise - A (clipped)
    scaled = noise.point(lambda v: v * 2 * amplitude // 255)
    return ImageChops.add(image, scaled, scale=1.0, offset=-amplitude)


# -- the cached corpus ------------------------------------------------------

def corpus_plan(count, seed):
    """(seed, width, height) per image: every other one 12 MP, the rest 2 MP."""
    return [(seed * 1000 + index, *(LARGE if index % 2 == 0 else SMALL)) for index in range(count)]


def ensure_images(out_dir, count, seed, log=print):
    """Generate (or reuse) ``count`` images; return BenchImage list."""
    return [_cached(Path(out_dir), image_seed, width, height, log)
            for image_seed, width, height in corpus_plan(count, seed)]


def ensure_huge(out_dir, seed, log=print):
    return _cached(Path(out_dir), seed * 1000 + 999, *HUGE, log)


def tiny_jpeg(tag):
    """A small distinct JPEG (warm-up upload), unique per ``tag``."""
    rng = random.Random(tag)
    image = Image.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, comment=str(tag).encode())
    return out.getvalue()


def _cached(out_dir, image_seed, width, height, log):
    folder = out_dir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "v{}-s{}-{}x{}-q{}.jpg".format(GENERATOR_VERSION, image_seed, width, height, QUALITY)
    if not path.exists():
        log("generating {} ({:.0f} MP)".format(path.name, width * height / 1e6))
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(photo_like(image_seed, width, height))
        tmp.replace(path)
    return BenchImage(path, width, height, path.stat().st_size)


def describe(images):
    """Summary for the report: counts and mean sizes per resolution."""
    groups = {}
    for image in images:
        groups.setdefault((image.width, image.height), []).append(image.size)
    return [{"width": w, "height": h, "count": len(sizes), "mean_bytes": sum(sizes) / len(sizes)}
            for (w, h), sizes in sorted(groups.items(), reverse=True)]


if __name__ == "__main__":  # a quick look at sizes and speed: python -m bench.images
    import time
    for size in (LARGE, SMALL):
        started = time.perf_counter()
        data = photo_like(1, *size)
        print("{}x{}: {} bytes in {:.2f} s".format(*size, len(data), time.perf_counter() - started))
