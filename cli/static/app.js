// The page of `retrieve serve`: the collection as a grid, and the nearest images of any of
// them or of a dropped file (the paper's Figure 4, live). Only the server's own API is used.
"use strict";

const PAGE = 100;
const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
let next = 0, total = null, loading = false;

function url(path) {  // <img> tags cannot send headers: the token goes in the query
  return token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;
}

async function api(path, options = {}) {
  const response = await fetch(url(path), options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function toast(message) {
  $("toast").textContent = message;
  $("toast").hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { $("toast").hidden = true; }, 5000);
}

function basename(path) { return path.split("/").pop(); }

function tile(src, caption, { distance = null, onClick = null, query = false } = {}) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.loading = "lazy";
  img.src = src;
  img.alt = caption;
  const label = document.createElement("figcaption");
  label.textContent = caption;
  label.title = caption;
  if (distance !== null) {
    const d = document.createElement("span");
    d.className = "distance";
    d.textContent = distance.toFixed(3);
    label.prepend(d);
  }
  figure.append(img, label);
  if (query) figure.classList.add("query");
  if (onClick) {
    figure.tabIndex = 0;  // reachable with the keyboard too
    figure.addEventListener("click", onClick);
    figure.addEventListener("keydown", (e) => { if (e.key === "Enter") onClick(); });
  }
  return figure;
}

function show(title, querySrc, results) {
  $("results-title").textContent = title;
  const row = $("neighbours");
  row.replaceChildren(tile(querySrc, "query", { query: true }));
  for (const r of results) {
    row.append(tile(url(`/api/items/${r.id}/thumbnail`), basename(r.path),
                    { distance: r.distance, onClick: () => neighboursOf(r.id, r.path) }));
  }
  $("results").hidden = false;
  window.scrollTo({ top: 0, behavior: "smooth" });
}

async function neighboursOf(id, path) {
  try {
    const body = await api(`/api/items/${id}/neighbours?k=${$("k").value}`);
    show(`Nearest images to ${basename(path)}`, url(`/api/items/${id}/thumbnail`), body.results);
  } catch (e) { toast(e.message); }
}

let uploaded = null;  // the object URL of the last upload, released at the next one

async function searchWith(file) {
  const form = new FormData();
  form.append("image", file);
  try {
    const body = await api(`/api/search?k=${$("k").value}`, { method: "POST", body: form });
    if (uploaded) URL.revokeObjectURL(uploaded);
    uploaded = URL.createObjectURL(file);
    show(`Nearest images to ${file.name}`, uploaded, body.results);
  } catch (e) { toast(e.message); }  // the server names the file
}

async function duplicates() {
  $("results-title").textContent = "Looking for duplicates…";
  $("neighbours").replaceChildren();
  $("results").hidden = false;
  try {
    const body = await api("/api/duplicates");
    $("results-title").textContent = body.groups.length
      ? `${body.groups.length} groups of duplicates (the file to keep framed; nothing is deleted)`
      : `No duplicates among ${body.images} images`;
    const row = $("neighbours");
    body.groups.forEach((g, n) => {
      const title = document.createElement("p");
      title.className = "group";
      title.textContent = `${n + 1}. ${g.tier === "exact" ? "exact copies" : "near-duplicates"}`;
      row.append(title);
      g.members.forEach((m, i) => row.append(tile(
        url(`/api/items/${m.id}/thumbnail`), i ? basename(m.path) : `keep ${basename(m.path)}`,
        { distance: i ? m.distance : null, query: i === 0,
          onClick: () => neighboursOf(m.id, m.path) })));
    });
  } catch (e) { toast(e.message); $("results").hidden = true; }
}

async function loadMore() {
  if (loading || (total !== null && next >= total)) return;
  loading = true;
  try {
    const body = await api(`/api/items?offset=${next}&limit=${PAGE}`);
    total = body.total;
    for (const item of body.items) {
      $("grid").append(tile(url(`/api/items/${item.id}/thumbnail`), basename(item.path),
                            { onClick: () => neighboursOf(item.id, item.path) }));
    }
    next += body.items.length;
    $("more").textContent = next < total ? `${next} of ${total} shown` : "";
  } catch (e) { toast(e.message); }
  loading = false;
}

async function start() {
  try {
    const info = await api("/api/info");
    const weights = info.weights === "imagenet" ? "ImageNet weights" : basename(info.weights);
    $("summary").textContent =
      `${info.count} images · ${info.layer}, ${info.dim} dimensions · ${info.factory} · ${weights}`;
  } catch (e) { $("summary").textContent = e.message; return; }
  new IntersectionObserver((seen) => { if (seen.some((s) => s.isIntersecting)) loadMore(); })
    .observe($("more"));
  loadMore();
}

$("file").addEventListener("change", (e) => { if (e.target.files[0]) searchWith(e.target.files[0]); });
$("close").addEventListener("click", () => { $("results").hidden = true; });
$("duplicates").addEventListener("click", duplicates);
$("k").addEventListener("change", () => { $("results").hidden = true; });
window.addEventListener("dragover", (e) => { e.preventDefault(); $("drop").hidden = false; });
$("drop").addEventListener("dragleave", () => { $("drop").hidden = true; });
window.addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").hidden = true;
  if (e.dataTransfer.files[0]) searchWith(e.dataTransfer.files[0]);
});
start();
