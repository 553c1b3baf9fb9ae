"""Drives the web page in headless Debian Chromium with Playwright.

Run as its own process, never inside the test process: Playwright's sync API
runs an asyncio loop that hangs under the eventlet monkey patching of
``nameko test``.  The test talks to it over stdin/stdout, one JSON object per
line:

1. opens ``/``, saves an API key if given, uploads FILES through the file
   input, waits until every upload is answered and every card shows, then
   prints ``{"phase": "uploaded", "cards": …}`` and waits for a line on stdin
   (the test starts imaging meanwhile, so statuses change while we watch);
2. waits until every card is ``done`` or ``failed`` -- through the page's own
   live stream, without reloading -- and, for done ones, until the thumbnail
   has loaded; screenshots the page;
3. clicks the card of ``--open`` and reads the renditions table; screenshots
   the dialog; prints ``{"phase": "finished", …}``.

Exits 1 with a message on any failure (a wait timing out, a page error).
"""
import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TERMINAL = ("done", "failed")


def emit(message):
    print(json.dumps(message), flush=True)


def image_id(path, api_key=None):
    # the pipeline's ids are the first 128 bits of the SHA-256 of what it
    # stores -- the upload less its metadata (imagepipe.rendering.strip) --
    # hashed with the key's tenant when there is one (imagepipe.ids)
    from imagepipe.ids import image_id_for
    from imagepipe.rendering.probe import probe_with_orientation
    from imagepipe.rendering.strip import stored_form
    from imagepipe.web.keys import parse_api_keys

    data = Path(path).read_bytes()
    info, orientation = probe_with_orientation(data)
    sha256 = hashlib.sha256(stored_form(data, info.format, orientation)).hexdigest()
    return image_id_for(sha256, parse_api_keys(api_key)[0].tenant if api_key else None)


def read_cards(page, ids):
    return page.evaluate("""(ids) => ids.map((id) => {
        const card = document.querySelector(`.card[data-id="${id}"]`);
        if (!card) return {id, present: false};
        const img = card.querySelector(".thumb img");
        const error = card.querySelector(".card-error");
        const canvas = card.querySelector(".thumb canvas.placeholder");
        return {
            id, present: true,
            status: card.dataset.status,
            badge: card.querySelector(".badge").textContent,
            error: error ? error.textContent : null,
            thumb: img && img.complete ? [img.naturalWidth, img.naturalHeight] : null,
            thumb_src: img ? img.getAttribute("src") : null,
            thumb_current_src: img ? img.currentSrc : null,
            sources: Array.from(card.querySelectorAll(".thumb picture source"))
                .map((source) => [source.type, source.srcset]),
            thumb_loaded_at: img && img.dataset.loadedAt ? Number(img.dataset.loadedAt) : null,
            background: card.querySelector(".thumb").style.backgroundColor,
            placeholder: canvas ? {
                size: [canvas.width, canvas.height],
                painted_at: Number(canvas.dataset.paintedAt),
                rgba: Array.from(canvas.getContext("2d")
                    .getImageData(0, 0, canvas.width, canvas.height).data),
            } : null,
        };
    })""", ids)


def run(args, playwright):
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
    page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    problems = []
    page.on("console", lambda msg: msg.type == "error" and problems.append("console: " + msg.text))
    page.on("pageerror", lambda exc: problems.append("page error: {}".format(exc)))
    event_streams = []
    page.on("request", lambda request: request.url.endswith("/events")
            and event_streams.append(request.url.rsplit("/", 2)[-2]))

    page.goto(args.base_url + "/")
    page.wait_for_selector("#drop-zone")
    key_prompt = None
    if args.api_key:
        # without a key the gallery's first request is refused: the page asks
        page.wait_for_selector("#notice:not([hidden])")
        key_prompt = page.text_content("#notice")
        problems[:] = [problem for problem in problems if "401" not in problem]
        page.fill("#api-key", args.api_key)
        page.click("#key-form button[type=submit]")
        page.wait_for_function("document.getElementById('key-state').textContent === 'key saved'")

    ids = [image_id(path, args.api_key) for path in args.files]
    page.set_input_files("#file-input", args.files)
    page.wait_for_function(
        """(count) => document.querySelectorAll('#uploads .upload.accepted, #uploads .upload.failed')
                           .length === count""", arg=len(args.files), timeout=30000)
    uploads = page.eval_on_selector_all(
        "#uploads .upload", """rows => rows.map(row => ({
            name: row.querySelector('.upload-name').textContent,
            accepted: row.classList.contains('accepted'),
            progress: row.querySelector('progress').value,
            state: row.querySelector('.upload-state').textContent}))""")
    page.wait_for_function(
        "(ids) => ids.every((id) => document.querySelector(`.card[data-id='${id}']`))",
        arg=ids, timeout=30000)
    emit({"phase": "uploaded", "key_prompt": key_prompt, "uploads": uploads, "cards": read_cards(page, ids)})
    sys.stdin.readline()

    page.wait_for_function("""(ids) => ids.every((id) => {
        const card = document.querySelector(`.card[data-id='${id}']`);
        if (!card || !['done', 'failed'].includes(card.dataset.status)) return false;
        const img = card.querySelector('.thumb img');
        return card.dataset.status === 'failed' || (img && img.complete && img.naturalWidth > 0);
    })""", arg=ids, timeout=60000)
    cards = read_cards(page, ids)
    screenshots = {"gallery": str(Path(args.screenshot_dir) / "gallery.png")}
    page.screenshot(path=screenshots["gallery"], full_page=True)

    details = None
    if args.open:
        page.click(".card[data-id='{}']".format(args.open))
        page.wait_for_selector("#details[open]")
        page.wait_for_function(
            "() => document.querySelectorAll('#renditions tr').length >= 2 && "
            "document.getElementById('details-image').complete && "
            "document.getElementById('details-image').naturalWidth > 0", timeout=30000)
        details = {
            "preview_src": page.evaluate("document.getElementById('details-image').currentSrc"),
            "preview_srcset": page.evaluate("document.getElementById('details-image').srcset"),
            "title": page.text_content("#details-title"),
            "summary": page.text_content("#details-summary"),
            "rows": page.eval_on_selector_all(
                "#renditions tr", """rows => rows.map(row => ({
                    name: row.dataset.rendition,
                    cells: Array.from(row.querySelectorAll('td')).map(td => td.textContent)}))"""),
        }
        screenshots["details"] = str(Path(args.screenshot_dir) / "details.png")
        page.screenshot(path=screenshots["details"])
    browser.close()
    emit({"phase": "finished", "cards": cards, "details": details, "problems": problems,
          "event_streams": event_streams, "screenshots": screenshots})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--screenshot-dir", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--open", help="id of the image whose details to open")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        sys.exit("{} is missing: install Debian's chromium (apt-get install chromium)".format(CHROMIUM))

    from playwright.sync_api import Error, sync_playwright

    try:
        with sync_playwright() as playwright:
            run(args, playwright)
    except Error as exc:
        sys.exit("browser step failed: {}".format(exc))


if __name__ == "__main__":
    main()
