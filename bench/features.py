"""What placeholders, smart crop and animation cost per image, in the render worker's code.

``python -m bench.features``: best-of-5 milliseconds, in this process, on a
seeded photo-like 2 MP JPEG (bench.images) and the corpus's animated files.
"""
import io

from PIL import Image

from bench.costs import _timed
from bench.images import photo_like
from imagepipe.rendering.focus import auto_focus
from imagepipe.rendering.placeholder import placeholder_for
from imagepipe.rendering.presets import DEFAULT_PRESETS, Preset, presets_from_config
from imagepipe.rendering.render import render
from tests.corpus import read


def best_ms(func, repeat=5):
    return _timed(func, repeat) * 1000


def main():
    photo = photo_like(7, 1800, 1200)
    defaults = presets_from_config(DEFAULT_PRESETS)
    decoded = Image.open(io.BytesIO(photo))
    decoded.draft("RGB", (1024, 1024))
    decoded.load()
    thumb = decoded.resize((256, 171))
    cover = Preset("square", 256, 256, fit="cover")
    rows = [
        ("default presets (thumb + medium webp), whole render", best_ms(lambda: render(photo, defaults))),
        ("  of which the placeholder (ThumbHash + colour, once per image)",
         best_ms(lambda: placeholder_for(thumb))),
        ("auto focal point (saliency) on the decoded image", best_ms(lambda: auto_focus(decoded))),
        ("defaults + a 256 px cover preset, focus from upload",
         best_ms(lambda: render(photo, defaults + (cover,), focus=(0.5, 0.5)))),
        ("defaults + a 256 px cover preset, automatic focus",
         best_ms(lambda: render(photo, defaults + (cover,)))),
    ]
    for name in ("iss634.webp", "iss634.apng"):
        data = read(name)
        still = (Preset("anim", 256, 256),)
        moving = (Preset("anim", 256, 256, animated=True),)
        rows.append(("{} (42 frames 245 px) 256 px preset, first frame".format(name),
                     best_ms(lambda: render(data, still), 3)))
        rows.append(("{} 256 px preset, animated WebP".format(name),
                     best_ms(lambda: render(data, moving), 3)))
    print("| step | ms |\n|---|---|")
    for name, ms in rows:
        print("| {} | {:.1f} |".format(name, ms))


if __name__ == "__main__":
    main()
