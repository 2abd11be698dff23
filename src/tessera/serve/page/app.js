// The search page: plain DOM and fetch, no framework, nothing from a CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
const statusLine = $("status");
let droppedFile = null;
let filterColumns = [];
const blobUrls = [];

keyInput.value = localStorage.getItem("tessera-api-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("tessera-api-key", keyInput.value.trim()); loadModels(); });

function headers(extra) {
  return Object.assign({ Authorization: "Bearer " + keyInput.value.trim() }, extra || {});
}

function say(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

async function problemText(response) {
  try { const p = await response.json(); return p.detail || p.title || response.statusText; }
  catch (e) { return response.status + " " + response.statusText; }
}

async function loadModels() {
  if (!keyInput.value.trim()) { say("Enter an API key to search."); return; }
  const r = await fetch("/v1/models", { headers: headers() });
  if (!r.ok) { say(await problemText(r), true); return; }
  const info = await r.json();
  filterColumns = (info.index && info.index.filters) || [];
  const box = $("filters");
  box.textContent = "";
  for (const column of filterColumns) {
    const label = document.createElement("label");
    label.textContent = column + " ";
    const input = document.createElement("input");
    input.dataset.column = column;
    input.className = "filter";
    input.placeholder = "any";
    label.appendChild(input);
    box.appendChild(label);
  }
  say(info.index ? `Ready: ${info.index.rows} items.` : "This server has no search index.");
  showGenerator((info.data || []).find((m) => m.kind === "images"));
}

// The generation panel: shown when the server has an image model (`tessera serve --image-generator`).
let imageModel = null;

function showGenerator(model) {
  if (model && imageModel && model.id === imageModel.id) return;  // already set up (the key was entered again)
  imageModel = model || null;
  $("generate-panel").hidden = !model;
  if (!model) return;
  const select = $("gen-n");
  select.textContent = "";
  for (let n = 1; n <= (model.max_n || 1); n++) {
    const option = document.createElement("option");
    option.textContent = String(n);
    select.appendChild(option);
  }
  $("gen-status").textContent = `${model.id} draws ${model.sizes[0]} images.`;
}

$("generate-form").addEventListener("submit", (e) => { e.preventDefault(); draw(); });

async function draw() {
  const prompt = $("gen-prompt").value.trim();
  const line = $("gen-status");
  if (!prompt) { line.textContent = "Type what to draw."; line.className = "error"; return; }
  line.textContent = "Drawing…";
  line.className = "";
  const r = await fetch("/v1/images/generations", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ model: imageModel.id, prompt: prompt, n: Number($("gen-n").value), response_format: "b64_json" }),
  });
  if (!r.ok) { line.textContent = await problemText(r); line.className = "error"; return; }
  const body = await r.json();
  const box = $("gen-images");
  box.textContent = "";
  for (const item of body.data) {
    const card = document.createElement("article");
    card.className = "card";
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + item.b64_json;
    img.alt = prompt;
    card.appendChild(img);
    box.appendChild(card);
  }
  line.textContent = `${body.data.length} image(s) for “${prompt}”.`;
}

function setFile(file) {
  droppedFile = file;
  $("drop-label").textContent = file ? `Query file: ${file.name}` : "Drop an image or a sound here, or";
  $("clear-file").hidden = !file;
}

const zone = $("drop-zone");
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (e) => {
  e.preventDefault();
  zone.classList.remove("over");
  if (e.dataTransfer.files.length) { setFile(e.dataTransfer.files[0]); search(); }
});
$("query-file").addEventListener("change", (e) => { setFile(e.target.files[0] || null); if (droppedFile) search(); });
$("clear-file").addEventListener("click", () => { $("query-file").value = ""; setFile(null); });
$("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });

function filters() {
  const out = {};
  for (const input of document.querySelectorAll("input.filter")) {
    const v = input.value.trim();
    if (v === "") continue;
    out[input.dataset.column] = v !== "" && !isNaN(Number(v)) ? Number(v) : v;
  }
  return out;
}

async function search() {
  const text = $("query-text").value.trim();
  if (!text && !droppedFile) { say("Type a query or drop a file.", true); return; }
  const form = new FormData();
  if (text) form.append("text", text);
  if (droppedFile) form.append("file", droppedFile, droppedFile.name);
  form.append("k", $("k").value);
  form.append("filters", JSON.stringify(filters()));
  say("Searching…");
  const r = await fetch("/v1/search", { method: "POST", headers: headers(), body: form });
  if (!r.ok) { say(await problemText(r), true); return; }
  const body = await r.json();
  render(body.request_id, body.results);
  say(`${body.results.length} result(s).`);
}

function render(requestId, results) {
  while (blobUrls.length) URL.revokeObjectURL(blobUrls.pop());
  const grid = $("results");
  grid.textContent = "";
  grid.dataset.requestId = requestId;
  for (const hit of results) {
    const card = document.createElement("article");
    card.className = "card";
    card.dataset.id = hit.id;
    if (hit.thumbnail) {
      const img = document.createElement("img");
      img.src = hit.thumbnail;
      img.alt = "result " + hit.id;
      card.appendChild(img);
    } else if (hit.media_url) {
      const audio = document.createElement("audio");
      audio.controls = true;
      card.appendChild(audio);
      fetch(hit.media_url, { headers: headers() }).then((m) => m.ok ? m.blob() : null).then((blob) => {
        if (!blob) return;
        const url = URL.createObjectURL(blob);
        blobUrls.push(url);
        audio.src = url;
      });
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    const parts = [`#${hit.rank} · score ${hit.score.toFixed(3)}`];
    for (const [k, v] of Object.entries(hit.metadata)) if (v !== null && v !== "") parts.push(`${k}: ${v}`);
    meta.textContent = parts.join(" · ");
    card.appendChild(meta);
    const votes = document.createElement("div");
    votes.className = "votes";
    for (const [label, rating] of [["👍 like", 1], ["👎 dislike", -1]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.className = rating > 0 ? "like" : "dislike";
      b.addEventListener("click", () => feedback(requestId, hit.id, rating, b, votes));
      votes.appendChild(b);
    }
    card.appendChild(votes);
    grid.appendChild(card);
  }
}

async function feedback(requestId, itemId, rating, button, group) {
  const r = await fetch("/v1/feedback", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ request_id: requestId, item_id: itemId, rating: rating }),
  });
  if (!r.ok) { say(await problemText(r), true); return; }
  for (const b of group.querySelectorAll("button")) b.classList.remove("chosen");
  button.classList.add("chosen");
  say("Thanks for the feedback.");
}

loadModels();
