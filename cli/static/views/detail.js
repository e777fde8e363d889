// One image in detail ("&open=ID" on any address): as large as the window allows, its full
// path (to copy), folder, size and dates, a link to the original, and in results its raw
// distance to the query. Escape closes it; the arrow keys go to the previous or next image.
import { api, original, preview, thumbnail } from "../api.js";
import { fail, rehome, say } from "../messages.js";
import { format, go, withParams } from "../router.js";
import { closeness, percent, split, where } from "../tiles.js";

const $ = (id) => document.getElementById(id);
const dialog = $("detail");
let shown = null;  // {id, route, order}
let asked = 0;  // the latest show(): an older answer arriving later is dropped

function fact(term, ...values) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.append(...values);
  return [dt, dd];
}

function code(text) {
  const c = document.createElement("code");
  c.textContent = text;
  return c;
}

function folderLink(folder) {
  const a = document.createElement("a");
  a.href = format({ view: "", params: new URLSearchParams({ folder }) });
  a.textContent = where(`${folder}/x`) || folder;
  a.title = `Show the images of ${folder}`;
  return a;
}

/** (a sentence, [facts]) of what the view it was opened from knows of the image. */
function relation(context) {
  const distance = (d) => fact("Distance", `${d.toFixed(3)} (Euclidean, between fc7 vectors)`);
  if (context?.match) {
    const m = context.match;
    return [`Number ${m.rank} among the images most like ${m.query}.`, [
      ...distance(m.distance),
      ...(m.share === null ? [] : fact("Closeness", `${percent(m.share)}: ${closeness(m.share)}`)),
    ]];
  }
  if (context?.duplicate) {
    const d = context.duplicate;
    const kind = d.tier === "exact" ? "exact copies" : "near-duplicates";
    if (d.keep) return [`The file to keep among its ${kind}.`, []];
    return [`One of the ${kind} of ${d.kept}.`, [
      ...distance(d.distance),
      ...(d.similarity === null ? [] : fact("Pixels", `${d.similarity.toFixed(3)} alike, `
                                           + `differing ${d.difference.toFixed(3)} in part`)),
    ]];
  }
  return ["", []];
}

function bytes(n) {
  const [value, unit] = n >= 1e6 ? [n / 1e6, "MB"] : [n / 1e3, "KB"];
  return `${value.toLocaleString(undefined, { maximumFractionDigits: 1 })} ${unit}`;
}

export async function show(id, route, context) {
  const mine = ++asked;
  shown = { id: String(id), route, order: (context?.order || []).map(String) };
  if (!dialog.open) {
    dialog.showModal();
    rehome();
  }
  $("detail-copy").dataset.path = "";  // until this image's facts come
  const at = shown.order.indexOf(shown.id);
  $("previous").disabled = at <= 0;
  $("next").disabled = at < 0 || at >= shown.order.length - 1;
  $("detail-image").src = thumbnail(id);  // at once; the preview replaces it when it comes
  const large = new Image();
  large.onload = () => { if (mine === asked) $("detail-image").src = large.src; };
  large.src = preview(id);
  const [sentence, related] = relation(context);
  $("detail-match").textContent = sentence;
  $("detail-facts").replaceChildren(...related);
  $("detail-similar").href = format({ view: "similar", id, params: new URLSearchParams(
    route.params.get("k") ? { k: route.params.get("k") } : {}) });
  $("detail-original").href = original(id);
  let facts;
  try {
    facts = await api(`/api/items/${id}`);
  } catch (e) {
    if (mine === asked) { $("detail-title").textContent = `Image ${id}`; fail(e); }
    return;
  }
  if (mine !== asked) return;
  $("detail-title").textContent = facts.name;
  $("detail-image").alt = facts.name;
  const size = facts.width ? `${facts.width} × ${facts.height} pixels, ` : "";
  $("detail-facts").replaceChildren(
    ...related,
    ...fact("Folder", folderLink(facts.folder)),
    ...fact("Path", code(facts.path)),
    ...fact("Size", `${size}${bytes(facts.bytes)} (${facts.media_type})`),
    ...fact("Modified", new Date(facts.modified).toLocaleString()),
    ...fact("Indexed", new Date(facts.indexed).toLocaleString()),
  );
  $("detail-copy").dataset.path = facts.path;
}

export function hide() {
  if (!dialog.open) return;
  shown = null;
  dialog.close();
  rehome();
}

export const isOpen = () => dialog.open;

/** Close: back to the address it was opened from (or that address without it). */
function close() {
  if (!shown) return;
  if (history.state?.opened) history.back();
  else go(withParams(shown.route, { open: null }), { replace: true });
}

function turn(by) {
  if (!shown) return;
  const next = shown.order[shown.order.indexOf(shown.id) + by];
  if (next !== undefined) {
    go(withParams(shown.route, { open: next }), { replace: true });
  }
}

async function copy() {
  const path = $("detail-copy").dataset.path;
  if (!path) return;
  try {
    await navigator.clipboard.writeText(path);
  } catch {  // no clipboard API (an http:// address that is not this machine): the old way
    const area = document.createElement("textarea");
    area.value = path;
    dialog.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    if (!done) { fail(new Error(`Could not copy the path: ${path}`)); return; }
  }
  say(`Copied ${split(path).name}'s path`);
}

export function setup() {
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(); });  // Escape
  $("close").addEventListener("click", close);
  $("previous").addEventListener("click", () => turn(-1));
  $("next").addEventListener("click", () => turn(1));
  $("detail-copy").addEventListener("click", copy);
  dialog.addEventListener("keydown", (e) => {
    if (e.target.matches("input, textarea, select") || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowLeft") { e.preventDefault(); turn(-1); }
    if (e.key === "ArrowRight") { e.preventDefault(); turn(1); }
  });
}
