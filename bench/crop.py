"""How well ``fit: cover`` keeps the subject: focal-point strategies on real photos.

``python -m bench.crop``: each corpus photo in turn is the subject, scaled to
a third of a 3:2 canvas and pasted at 7 horizontal positions onto a heavily
blurred enlargement of another corpus photo (a shallow depth of field, as in
most photos with a subject).  Each strategy's square cover crop is scored by
the fraction of the subject inside it, and timed.  Prints a table.
"""
import statistics
import time

from PIL import Image, ImageFilter

from imagepipe.rendering.focus import CENTRE, auto_focus, crop_region
from tests.corpus import read

PHOTOS = ["flower.jpg", "xmp_test.jpg", "hopper_bad_exif.jpg"]
CANVAS = (900, 600)
POSITIONS = [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]


def entropy_focus(image, steps=24):
    """The centre of the max-entropy window (the square a cover crop takes), sharp-style."""
    gray = image.convert("L")
    width, height = gray.size
    side = min(width, height)
    best, best_x = -1.0, width / 2
    for step in range(steps + 1):
        left = (width - side) * step / steps
        entropy = gray.crop((int(left), 0, int(left) + side, side)).entropy()
        if entropy > best:
            best, best_x = entropy, left + side / 2
    return (best_x / width, 0.5)


STRATEGIES = {
    "centre": lambda image: CENTRE,
    "entropy window": entropy_focus,
    "saliency centroid (imagepipe)": auto_focus,
}


def _open(name):
    from io import BytesIO

    return Image.open(BytesIO(read(name))).convert("RGB")


def scenes():
    for subject_name in PHOTOS:
        for background_name in PHOTOS:
            if background_name == subject_name:
                continue
            background = _open(background_name).resize(CANVAS).filter(ImageFilter.GaussianBlur(18))
            subject = _open(subject_name)
            subject.thumbnail((CANVAS[0] // 3, CANVAS[1] // 3 * 2))
            for position in POSITIONS:
                canvas = background.copy()
                left = int(position * (CANVAS[0] - subject.width))
                top = (CANVAS[1] - subject.height) // 2
                canvas.paste(subject, (left, top))
                yield canvas, (left, top, left + subject.width, top + subject.height)


def kept(region, box):
    overlap = max(0, min(region[2], box[2]) - max(region[0], box[0]))
    return overlap / (box[2] - box[0])


def main():
    results = {name: {"kept": [], "ms": []} for name in STRATEGIES}
    for canvas, box in scenes():
        for name, strategy in STRATEGIES.items():
            started = time.perf_counter()
            focus = strategy(canvas)
            results[name]["ms"].append((time.perf_counter() - started) * 1000)
            results[name]["kept"].append(kept(crop_region(canvas.size, 1.0, focus), box))
    print("| strategy | subject wholly kept | mean fraction kept | worst | ms per image (median) |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        whole = sum(1 for value in result["kept"] if value >= 0.999)
        print("| {} | {} of {} | {:.2f} | {:.2f} | {:.1f} |".format(
            name, whole, len(result["kept"]), statistics.mean(result["kept"]),
            min(result["kept"]), statistics.median(result["ms"])))


if __name__ == "__main__":
    main()
