// The images most like one: an indexed image ("#/similar/ID") or one searched with
// ("#/upload/KEY", kept in the browser). The query is shown above, never among its results.
import { ApiError, api, megabytes, thumbnail } from "../api.js";
import { format, withParams } from "../router.js";
import { navigable, split, tile, where } from "../tiles.js";
import * as uploads from "../uploads.js";

const $ = (id) => document.getElementById(id);
export const section = $("results");
const legend = $("legend");  // moved into the query's card, kept here when that is emptied
const DEFAULT_K = "10";
let shown = null;  // {route, name, results}
let objectUrl = null;  // of the upload shown, released at the next one

export function key(route) {
  return `${route.view}/${route.id}?k=${route.params.get("k") || DEFAULT_K}`;
}

export function title() { return shown ? `Similar to ${shown.name} · retrieve` : "retrieve"; }

/** The results of an upload just answered, so that showing them asks nothing again. */
const answered = new Map();  // upload key -> results
export function preset(uploadKey, k, results) {
  answered.set(uploadKey, { k: String(k), results });
}

/** Search with ``file``: its results, or an error naming it (too large: said before sending). */
export async function search(file, k, limits) {
  if (limits && file.size > limits.max_upload_bytes) {
    throw new ApiError(`${file.name} is ${megabytes(file.size)}: this server takes images up `
                       + `to ${megabytes(limits.max_upload_bytes)} `
                       + "(retrieve serve --max-upload-mb)", 413);
  }
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    return (await api(`/api/search?k=${k}`, { method: "POST", body: form })).results;
  } catch (e) {
    if (e.status === 413) {
      throw new ApiError(`${file.name} is ${megabytes(file.size)}: larger than this server takes `
                         + "(retrieve serve --max-upload-mb)", 413);
    }
    throw e;  // the server names the file
  }
}

function queryCard(src, path, detailsHref) {
  const card = $("query");
  const img = document.createElement("img");
  img.src = src;
  img.alt = `the image searched with: ${split(path).name}`;
  const words = document.createElement("div");
  const name = document.createElement("p");
  name.className = "name";
  name.textContent = split(path).name;
  words.append(name);
  if (path.includes("/")) {
    const folder = document.createElement("p");
    folder.className = "muted";
    folder.textContent = where(path) || split(path).folder;
    folder.title = split(path).folder;
    words.append(folder);
  }
  if (detailsHref) {
    const details = document.createElement("a");
    details.className = "button";
    details.href = detailsHref;
    details.textContent = "Details";
    words.append(details);
  }
  words.append(legend);  // what the percentages say, beside the query
  card.replaceChildren(img, words);
}

function list(route, results) {
  const ul = $("neighbours");
  ul.replaceChildren(...results.map((r) => {
    const li = document.createElement("li");
    li.append(tile(r.id, r.path, format(withParams(route, { open: r.id })),
                   { share: r.closer_than }));
    return li;
  }));
  ul.querySelectorAll("a.tile").forEach((a, n) => { a.tabIndex = n ? -1 : 0; });
  legend.hidden = !results.some((r) => r.closer_than !== null);
}

export async function enter(route, live) {
  const k = route.params.get("k") || DEFAULT_K;
  if (![...$("k").options].some((o) => o.value === k)) $("k").append(new Option(k));
  $("k").value = k;
  $("neighbours").replaceChildren();
  $("query").replaceChildren();
  legend.hidden = true;
  shown = null;
  if (route.view === "similar") {
    $("results-title").textContent = "Similar images";
    const [facts, body] = await Promise.all([api(`/api/items/${route.id}`),
                                             api(`/api/items/${route.id}/neighbours?k=${k}`)]);
    if (!live()) return;
    shown = { route, name: facts.name, results: body.results };
    queryCard(thumbnail(route.id), facts.path,
              format(withParams(route, { open: route.id })));
  } else {
    const kept = await uploads.find(route.id);
    if (!live()) return;
    if (!kept) {
      $("results-title").textContent = "The image searched with is no longer kept here";
      throw new Error("That image is no longer kept in this browser: search with it again");
    }
    const results = answered.get(route.id)?.k === k ? answered.get(route.id).results
      : await search(kept.blob, k, null);
    if (!live()) return;
    answered.set(route.id, { k, results });
    shown = { route, name: kept.name, results };
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(kept.blob);
    queryCard(objectUrl, kept.name, null);
  }
  $("results-title").textContent = `Similar to ${shown.name}`;
  list(route, shown.results);
}

/** What the detail view says of ``id`` here: its distance to the query, and the order. */
export function context(id) {
  if (!shown) return null;
  const found = shown.results.find((r) => String(r.id) === String(id));
  return {
    order: shown.results.map((r) => r.id),
    match: found ? { query: shown.name, distance: found.distance, share: found.closer_than,
                     rank: found.rank } : null,
  };
}

export function setup(go) {
  navigable($("neighbours"));
  $("k").addEventListener("change", () => {
    if (shown) go(withParams(shown.route, { k: $("k").value, open: null }), { replace: true });
  });
}
