// imagepipe's web page: upload, watch statuses live, look at renditions.
// Plain JavaScript, no build step. Everything goes through the public HTTP API.
"use strict";

const KEY_STORAGE = "imagepipe.apiKey";
const PAGE_SIZE = 24;
const PARALLEL_UPLOADS = 2;
// A browser opens at most ~6 HTTP/1.1 connections per host; each live status
// stream holds one, so leave room for uploads and thumbnails.
const LIVE_STREAMS = 3;
const TERMINAL = new Set(["done", "failed"]);

const $ = (id) => document.getElementById(id);
const cards = new Map();          // image id -> {element, status}
const blobUrls = new Map();       // rendition url -> object URL (only with an API key)
const watchQueue = [];
const watching = new Set();
const uploadQueue = [];
let uploadsRunning = 0;
let nextPage = null;

// ---- API key -----------------------------------------------------------------
// The key lives in localStorage and travels as "Authorization: Bearer"; that is
// why live statuses use fetch() streaming rather than EventSource, which cannot
// send headers (and a key in a URL would end up in logs and history).

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: "Bearer " + key } : extra;
}

function showKeyState(text) {
  $("key-state").textContent = text;
}

function needKey() {
  $("key-form").classList.add("needs-key");
  showNotice(apiKey() ? "The server refused this API key: paste a valid one above."
                      : "This server needs an API key: paste it above and press Save.");
  $("api-key").focus();
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function apiGet(path) {
  const response = await fetch(path, { headers: authHeaders({ Accept: "application/json" }) });
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (response.status === 401) needKey();
  if (!response.ok) {
    throw new ApiError(response.status, (body && body.message) || response.statusText);
  }
  return body;
}

// What Chromium's <img> sends: with an API key the page fetches renditions
// itself, and asks for the formats an <img> would.
const IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";

// Where an <img> can load a rendition from. Without a key that is the URL
// itself; with one, an <img> cannot send the header, so fetch it and show an
// object URL (the CSP allows blob: images for exactly this).
async function imageSource(url) {
  if (!apiKey()) return url;
  if (!blobUrls.has(url)) {
    const response = await fetch(url, { headers: authHeaders({ Accept: IMAGE_ACCEPT }) });
    if (!response.ok) throw new ApiError(response.status, response.statusText);
    blobUrls.set(url, URL.createObjectURL(await response.blob()));
  }
  return blobUrls.get(url);
}

// ---- renditions: <picture> and placeholders ---------------------------------------
// A preset may have several formats (status: variant.formats, best first).
// Without a key the browser picks among them: one <source type> per format
// and the last (the fallback) as the <img>. With a key the negotiated URL is
// fetched with the Accept an <img> sends, and shown as a blob: URL.

function formatsOf(variant) {
  return Object.entries(variant.formats || { [variant.format]: variant });
}

// srcsets: {mime type: "url 256w, url 1024w"} over the given renditions
function srcsets(variants) {
  const sets = new Map();
  for (const variant of variants) {
    for (const [, info] of formatsOf(variant)) {
      if (!sets.has(info.mime_type)) sets.set(info.mime_type, []);
      sets.get(info.mime_type).push(info.url + " " + info.width + "w");
    }
  }
  return sets;
}

// A <picture> of one rendition, or (sizes given) of several as a srcset.
function pictureOf(variants, alt, sizes) {
  const picture = element("picture");
  const img = element("img");
  img.alt = alt;
  img.addEventListener("load", () => { img.dataset.loadedAt = performance.now(); });
  const main = variants[variants.length - 1];
  if (apiKey()) {
    imageSource(main.url).then((src) => { img.src = src; })
      .catch(() => { img.alt = alt + " unavailable"; });
    picture.append(img);
    return picture;
  }
  const sets = Array.from(srcsets(variants));
  const [fallbackType, fallbackSet] = sets[sets.length - 1];
  for (const [type, set] of sets.slice(0, -1)) {
    const source = element("source");
    source.type = type;
    source.srcset = set.join(", ");
    if (sizes) source.sizes = sizes;
    picture.append(source);
  }
  if (sizes) {
    img.srcset = fallbackSet.join(", ");
    img.sizes = sizes;
  }
  img.dataset.type = fallbackType;
  img.src = fallbackSet[fallbackSet.length - 1].split(" ")[0];
  picture.append(img);
  return picture;
}

// Paints the rendition's ThumbHash (and dominant colour) under where it will show.
function paintPlaceholder(container, variant) {
  if (variant.color) container.style.backgroundColor = variant.color;
  if (!variant.placeholder) return;
  let decoded;
  try {
    decoded = thumbHashToRGBA(Uint8Array.from(atob(variant.placeholder), (c) => c.charCodeAt(0)));
  } catch (err) {
    return;  // a malformed hash: the colour alone
  }
  const canvas = element("canvas", "placeholder");
  canvas.width = decoded.w;
  canvas.height = decoded.h;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(decoded.w, decoded.h);
  pixels.data.set(decoded.rgba);
  context.putImageData(pixels, 0, 0);
  canvas.dataset.paintedAt = performance.now();
  container.append(canvas);
}

// ThumbHash decoder (https://evanw.github.io/thumbhash/), the same arithmetic
// as imagepipe/rendering/placeholder.py's thumbhash_to_rgba.
function thumbHashToRGBA(hash) {
  const header24 = hash[0] | (hash[1] << 8) | (hash[2] << 16);
  const header16 = hash[3] | (hash[4] << 8);
  const lDc = (header24 & 63) / 63;
  const pDc = ((header24 >> 6) & 63) / 31.5 - 1;
  const qDc = ((header24 >> 12) & 63) / 31.5 - 1;
  const lScale = ((header24 >> 18) & 31) / 31;
  const hasAlpha = header24 >> 23;
  const pScale = ((header16 >> 3) & 63) / 63;
  const qScale = ((header16 >> 9) & 63) / 63;
  const isLandscape = header16 >> 15;
  const lx = Math.max(3, isLandscape ? (hasAlpha ? 5 : 7) : header16 & 7);
  const ly = Math.max(3, isLandscape ? header16 & 7 : (hasAlpha ? 5 : 7));
  const aDc = hasAlpha ? (hash[5] & 15) / 15 : 1;
  const aScale = (hash[5] >> 4) / 15;
  const start = hasAlpha ? 6 : 5;
  let index = 0;
  const factors = (nx, ny, scale) => {
    const out = [];
    for (let cy = 0; cy < ny; cy++) {
      for (let cx = cy ? 0 : 1; cx * ny < nx * (ny - cy); cx++, index++) {
        const nibble = (hash[start + (index >> 1)] >> ((index & 1) << 2)) & 15;
        out.push([cx, cy, (nibble / 7.5 - 1) * scale]);
      }
    }
    return out;
  };
  const lAc = factors(lx, ly, lScale);
  const pAc = factors(3, 3, pScale * 1.25);
  const qAc = factors(3, 3, qScale * 1.25);
  const aAc = hasAlpha ? factors(5, 5, aScale) : [];
  const ratio = (isLandscape ? (hasAlpha ? 5 : 7) : hash[3] & 7) /
                (isLandscape ? hash[3] & 7 : (hasAlpha ? 5 : 7));
  const w = Math.round(ratio > 1 ? 32 : 32 * ratio);
  const h = Math.round(ratio > 1 ? 32 / ratio : 32);
  const rgba = new Uint8ClampedArray(w * h * 4);
  const sum = (ac, fx, fy) => ac.reduce((total, [cx, cy, f]) => total + f * fx[cx] * fy[cy] * 2, 0);
  for (let y = 0, i = 0; y < h; y++) {
    const fy = [0, 1, 2, 3, 4, 5, 6].map((cy) => Math.cos(Math.PI / h * (y + 0.5) * cy));
    for (let x = 0; x < w; x++, i += 4) {
      const fx = [0, 1, 2, 3, 4, 5, 6].map((cx) => Math.cos(Math.PI / w * (x + 0.5) * cx));
      const l = lDc + sum(lAc, fx, fy);
      const p = pDc + sum(pAc, fx, fy);
      const q = qDc + sum(qAc, fx, fy);
      const a = aDc + sum(aAc, fx, fy);
      const b = l - 2 / 3 * p;
      const r = (3 * l - b + q) / 2;
      const g = r - q;
      rgba[i] = Math.round(255 * Math.min(1, r));
      rgba[i + 1] = Math.round(255 * Math.min(1, g));
      rgba[i + 2] = Math.round(255 * Math.min(1, b));
      rgba[i + 3] = Math.round(255 * Math.min(1, a));
    }
  }
  return { w, h, rgba };
}

// ---- small formatting helpers ----------------------------------------------------

function formatBytes(bytes) {
  if (bytes < 1024) return bytes + " B";
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return value.toFixed(value < 10 ? 1 : 0) + " " + units[unit];
}

function formatTime(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  return isNaN(when) ? iso : when.toLocaleString();
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = !text;
}

// ---- uploads -----------------------------------------------------------------

function enqueueUploads(files) {
  for (const file of files) {
    const row = element("li", "upload");
    const name = element("span", "upload-name", file.name);
    name.title = file.name;
    const bar = element("progress");
    bar.max = 1;
    bar.value = 0;
    const state = element("span", "upload-state", "waiting…");
    row.append(name, bar, state);
    $("uploads").prepend(row);
    uploadQueue.push({ file, row, bar, state });
  }
  pumpUploads();
}

function pumpUploads() {
  while (uploadsRunning < PARALLEL_UPLOADS && uploadQueue.length) {
    uploadsRunning += 1;
    upload(uploadQueue.shift()).finally(() => {
      uploadsRunning -= 1;
      pumpUploads();
    });
  }
}

// XMLHttpRequest, not fetch: only XHR reports upload progress.
function upload({ file, row, bar, state }) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/upload");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (!event.lengthComputable) return;
      bar.value = event.loaded / event.total;
      state.textContent = Math.round(bar.value * 100) + "% of " + formatBytes(event.total);
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (err) {
        body = null;
      }
      if (xhr.status === 202 && body) {
        bar.value = 1;
        row.classList.add("accepted");
        state.textContent = "uploaded ✓";
        showImage(body.id);
      } else {
        row.classList.add("failed");
        state.textContent = (body && body.message) || "failed (" + xhr.status + ")";
        state.title = state.textContent;
        if (xhr.status === 401) needKey();
      }
      resolve();
    };
    xhr.onerror = () => {
      row.classList.add("failed");
      state.textContent = "network error";
      resolve();
    };
    const form = new FormData();
    form.append("image", file, file.name);
    state.textContent = "uploading…";
    xhr.send(form);
  });
}

// A freshly accepted upload: put its card first and follow it.
async function showImage(id) {
  try {
    const status = await apiGet("/images/" + id);
    const card = cardFor(status);
    $("gallery").prepend(card.element);
    follow(status);
  } catch (err) {
    showNotice("Could not load image " + id + ": " + err.message);
  }
}

// ---- gallery -----------------------------------------------------------------

async function loadPage(url) {
  try {
    const page = await apiGet(url);
    showNotice("");
    for (const status of page.images) {
      if (cards.has(status.id)) continue;
      $("gallery").append(cardFor(status).element);
      follow(status);
    }
    nextPage = page.next;
    $("more").hidden = !nextPage;
    $("empty").hidden = cards.size > 0;
  } catch (err) {
    if (err.status !== 401) showNotice("Could not load images: " + err.message);
  }
}

function cardFor(status) {
  let card = cards.get(status.id);
  if (!card) {
    const node = element("li");
    const button = element("button", "card");
    button.type = "button";
    button.dataset.id = status.id;
    button.addEventListener("click", () => openDetails(status.id));
    node.append(button);
    card = { element: node, button, status: null };
    cards.set(status.id, card);
    $("empty").hidden = true;
  }
  render(card, status);
  return card;
}

function render(card, status) {
  const previous = card.status;
  card.status = status;
  const button = card.button;
  button.dataset.status = status.status;
  if (previous && previous.status === status.status && previous.updated_at === status.updated_at) return;

  const thumb = element("div", "thumb");
  if (status.status === "done" && status.variants.thumb) {
    paintPlaceholder(thumb, status.variants.thumb);
    thumb.append(pictureOf([status.variants.thumb], "thumbnail of " + status.id));
  } else if (status.status === "failed") {
    thumb.append(element("span", "failed-mark", "⚠"));
  } else {
    thumb.append(element("span", "spinner"));
  }

  const meta = element("div", "card-meta");
  meta.append(element("span", "badge " + status.status, status.status));
  const original = status.original;
  meta.append(element("span", "card-dims", original.width + "×" + original.height + " " + original.format));
  const time = formatBytes(original.bytes) + " · " + formatTime(status.created_at);
  const parts = [thumb, meta, element("div", "card-time", time)];
  if (status.error) parts.push(element("p", "card-error", status.error));
  button.replaceChildren(...parts);
  button.title = status.error || status.id;

  if ($("details").open && $("details").dataset.id === status.id) fillDetails(status);
}

// ---- live status (server-sent events over fetch) ----------------------------

function follow(status) {
  if (TERMINAL.has(status.status) || watching.has(status.id) || watchQueue.includes(status.id)) return;
  watchQueue.push(status.id);
  pumpWatches();
}

function pumpWatches() {
  while (watching.size < LIVE_STREAMS && watchQueue.length) {
    const id = watchQueue.shift();
    watching.add(id);
    watchStatus(id).finally(() => {
      watching.delete(id);
      pumpWatches();
    });
  }
}

async function watchStatus(id) {
  let retryDelay = 1000;
  for (;;) {
    try {
      const response = await fetch("/images/" + id + "/events", {
        headers: authHeaders({ Accept: "text/event-stream" }),
        cache: "no-store",
      });
      if (response.status === 401) {
        needKey();
        return;
      }
      if (response.status === 404) return;
      if (!response.ok) throw new ApiError(response.status, response.statusText);
      $("live-state").classList.remove("off");
      for await (const status of serverSentEvents(response.body)) {
        const card = cards.get(id);
        if (card) render(card, status);
        if (TERMINAL.has(status.status)) return;
      }
      retryDelay = 1000;  // the server closed a long-lived stream: open a new one
    } catch (err) {
      $("live-state").classList.add("off");
      await new Promise((resolve) => setTimeout(resolve, retryDelay));
      retryDelay = Math.min(retryDelay * 2, 30000);
    }
  }
}

// Parses a text/event-stream body; yields the JSON of each "status" event.
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseEventBlock(block);
      if (event.name === "status" && event.data) yield JSON.parse(event.data);
    }
  }
}

function parseEventBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;  // ":" starts a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") name = value;
    if (field === "data") data.push(value);
  }
  return { name, data: data.join("\n") };
}

// ---- details -----------------------------------------------------------------

async function openDetails(id) {
  const dialog = $("details");
  dialog.dataset.id = id;
  fillDetails(cards.get(id).status);
  if (!dialog.open) dialog.showModal();
  try {
    const status = await apiGet("/images/" + id);  // the freshest view
    if (dialog.dataset.id === id) fillDetails(status);
  } catch (err) {
    $("details-error").textContent = err.message;
    $("details-error").hidden = false;
  }
}

function fillDetails(status) {
  $("details-title").textContent = status.id;
  const original = status.original;
  $("details-summary").textContent = [
    status.status, original.format + " " + original.width + "×" + original.height,
    formatBytes(original.bytes), "uploaded " + formatTime(status.created_at),
  ].join(" · ");
  $("details-error").textContent = status.error || "";
  $("details-error").hidden = !status.error;

  // every contain rendition, smallest first: the browser takes what the
  // dialog's width needs, in the best format it can show
  const previews = Object.values(status.variants)
    .filter((variant) => !variant.focus).sort((a, b) => a.width - b.width);
  const figure = $("details-preview");
  figure.replaceChildren();
  figure.style.backgroundColor = "";
  if (previews.length) {
    paintPlaceholder(figure, previews[previews.length - 1]);
    const picture = pictureOf(previews, "preview of " + status.id, "(max-width: 760px) 90vw, 480px");
    picture.querySelector("img").id = "details-image";
    figure.append(picture);
  } else {
    const img = element("img");
    img.id = "details-image";
    img.alt = "no rendition yet";
    figure.append(img);
  }

  const rows = [["original", original]];
  for (const [name, variant] of Object.entries(status.variants)) {
    for (const [format, info] of formatsOf(variant)) {
      rows.push([name, { ...info, format }]);
    }
  }
  $("renditions").replaceChildren(...rows.map(([name, info]) => {
    const row = element("tr");
    row.dataset.rendition = name;
    const link = element("a", "", "open");
    link.href = info.url;
    link.target = "_blank";
    link.rel = "noopener";
    if (apiKey()) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        imageSource(info.url).then((src) => window.open(src, "_blank", "noopener"));
      });
    }
    const linkCell = element("td");
    linkCell.append(link);
    row.append(
      element("td", "", name),
      element("td", "", info.format.toUpperCase()),
      element("td", "num", info.width + " × " + info.height),
      element("td", "num", formatBytes(info.bytes)),
      linkCell,
    );
    return row;
  }));
}

// ---- wiring --------------------------------------------------------------------

function setUp() {
  $("api-key").value = apiKey();
  showKeyState(apiKey() ? "key saved" : "");
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    blobUrls.clear();
    $("key-form").classList.remove("needs-key");
    showKeyState(key ? "key saved" : "no key");
    cards.clear();
    $("gallery").replaceChildren();
    loadPage("/images?limit=" + PAGE_SIZE);
  });

  const input = $("file-input");
  input.addEventListener("change", () => {
    enqueueUploads(Array.from(input.files));
    input.value = "";
  });

  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    enqueueUploads(Array.from(event.dataTransfer.files));
  });
  // a file dropped next to the zone must not make the browser navigate away
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  $("more").addEventListener("click", () => nextPage && loadPage(nextPage));
  loadPage("/images?limit=" + PAGE_SIZE);
}

document.addEventListener("DOMContentLoaded", setUp);
