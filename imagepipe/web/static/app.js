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

// Where an <img> can load a rendition (or the original) from. A signed URL
// when the server hands them out (API keys with URL_SIGNING_SECRET): it works
// without the header. Without a key, the versioned URL: immutable, so the
// browser keeps it until the rendition changes. With a key but no signed
// URLs, an <img> cannot send the header, so fetch it and show an object URL
// (the CSP allows blob: images for exactly this).
function directUrl(rendition) {
  if (rendition.signed_url) return rendition.signed_url;
  return apiKey() ? null : rendition.versioned_url || rendition.url;
}

async function imageSource(rendition) {
  const direct = directUrl(rendition);
  if (direct) return direct;
  const url = rendition.url;
  if (!blobUrls.has(url)) {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) throw new ApiError(response.status, response.statusText);
    blobUrls.set(url, URL.createObjectURL(await response.blob()));
  }
  return blobUrls.get(url);
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
    const img = element("img");
    img.alt = "thumbnail of " + status.id;
    imageSource(status.variants.thumb).then((src) => { img.src = src; })
      .catch(() => { img.alt = "thumbnail unavailable"; });
    thumb.append(img);
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
      if (response.status === 404) {
        forget(id);  // deleted (in another tab, say)
        return;
      }
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

  const preview = status.variants.medium || status.variants.thumb;
  const img = $("details-image");
  img.removeAttribute("src");
  img.alt = preview ? "preview of " + status.id : "no rendition yet";
  if (preview) imageSource(preview).then((src) => { img.src = src; }).catch(() => {});

  const rows = [["original", original]].concat(Object.entries(status.variants));
  $("renditions").replaceChildren(...rows.map(([name, info]) => {
    const row = element("tr");
    row.dataset.rendition = name;
    const link = element("a", "", "open");
    link.href = directUrl(info) || info.url;
    link.target = "_blank";
    link.rel = "noopener";
    if (!directUrl(info)) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        imageSource(info).then((src) => window.open(src, "_blank", "noopener"));
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

// ---- delete --------------------------------------------------------------------

async function deleteImage(id) {
  if (!window.confirm("Delete image " + id + "? Its original and every rendition are erased.")) return;
  const response = await fetch("/images/" + id, { method: "DELETE", headers: authHeaders() });
  if (response.status === 401) {
    needKey();
    return;
  }
  // 404: deleted already (elsewhere): gone either way
  if (response.status !== 204 && response.status !== 404) {
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    $("details-error").textContent = "Could not delete: " + ((body && body.message) || response.statusText);
    $("details-error").hidden = false;
    return;
  }
  forget(id);
  $("details").close();
}

function forget(id) {
  const card = cards.get(id);
  if (card) card.element.remove();
  cards.delete(id);
  $("empty").hidden = cards.size > 0;
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
  $("delete-image").addEventListener("click", () => deleteImage($("details").dataset.id));
  loadPage("/images?limit=" + PAGE_SIZE);
}

document.addEventListener("DOMContentLoaded", setUp);
