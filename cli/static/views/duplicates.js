// The copies among the collection ("#/duplicates"): what `retrieve duplicates` finds, each
// group with the file to keep framed first. Nothing is moved or deleted from here.
import { api } from "../api.js";
import { format, withParams } from "../router.js";
import { navigable, split, tile } from "../tiles.js";

const $ = (id) => document.getElementById(id);
export const section = $("duplicates");
let report = null;
let shownRoute = null;

export function key() { return "duplicates"; }

export function title() { return "Duplicates · retrieve"; }

export async function enter(route, live) {
  shownRoute = route;
  $("duplicates-title").textContent = "Looking for duplicates… (a while on a large collection)";
  $("groups").replaceChildren();
  report = null;
  const body = await api("/api/duplicates");
  if (!live()) return;
  report = body;
  $("duplicates-title").textContent = body.groups.length
    ? `${body.groups.length.toLocaleString()} groups of duplicates among `
      + `${body.images.toLocaleString()} images (the file to keep framed; nothing is deleted)`
    : `No duplicates among ${body.images.toLocaleString()} images`;
  const parts = [];
  body.groups.forEach((g, n) => {
    const heading = document.createElement("h3");
    heading.className = "group";
    heading.id = `group-${n + 1}`;
    heading.textContent = `${n + 1}. ${g.tier === "exact" ? "exact copies" : "near-duplicates"}`
      + ` (${g.members.length} files)`;
    const ul = document.createElement("ul");
    ul.className = "grid";
    ul.setAttribute("aria-labelledby", heading.id);
    g.members.forEach((m, i) => {
      const li = document.createElement("li");
      li.append(tile(m.id, m.path, format(withParams(route, { open: m.id })), { keep: i === 0 }));
      ul.append(li);
    });
    parts.push(heading, ul);
  });
  $("groups").replaceChildren(...parts);
  $("groups").querySelectorAll("a.tile").forEach((a, n) => { a.tabIndex = n ? -1 : 0; });
}

/** The detail view's words for ``id``: its group's kept file and how alike they are. */
export function context(id) {
  if (!report) return null;
  const order = report.groups.flatMap((g) => g.members.map((m) => m.id));
  for (const g of report.groups) {
    const at = g.members.findIndex((m) => String(m.id) === String(id));
    if (at < 0) continue;
    const m = g.members[at];
    return { order, duplicate: { keep: at === 0, kept: split(g.members[0].path).name,
                                 tier: g.tier, distance: m.distance, similarity: m.similarity,
                                 difference: m.difference } };
  }
  return { order };
}

export function setup() { navigable($("groups")); }
export const route = () => shownRoute;
