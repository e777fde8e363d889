// The pieces of the duplicates' review: a file of a group as a card (its picture, a link to
// the full image, whether it is kept, its facts and what the plan does with it and why), and
// a group as a row of the list beside it.
import { thumbnail } from "../api.js";
import { split, where } from "../tiles.js";

const ACTIONS = {
  keep: "kept", trash: "to the trash", move: "moved", hardlink: "becomes a hard link",
  symlink: "becomes a symbolic link",
};
const LIST_THUMBNAILS = 4;  // pictures of a group in its row of the list

function element(tag, attributes = {}, ...children) {
  const e = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") e.textContent = value;
    else e.setAttribute(name, value);
  }
  e.append(...children);
  return e;
}

export function bytes(n) {
  const [value, unit] = n >= 1e6 ? [n / 1e6, "MB"] : [n / 1e3, "KB"];
  return `${value.toLocaleString(undefined, { maximumFractionDigits: 1 })} ${unit}`;
}

const kind = (group) => (group.tier === "exact" ? "exact copies" : "near-duplicates");

export function groupTitle(group, n) {
  return `Group ${n.toLocaleString()}: ${kind(group)} (${group.files.length} files)`;
}

/** How the file compares with the one the others were found to be copies of. */
function likeness(group, f, at) {
  if (group.tier === "exact") return [["Bytes", at ? "the same as the others" : "—"]];
  if (f.same_bytes_as) return [["Bytes", `the same as ${split(f.same_bytes_as).name}`]];
  if (f.distance === 0 && f.similarity === 1) return [["Compared", "the others with it"]];
  const out = [["Distance", `${f.distance.toFixed(3)} (fc7)`]];
  if (f.similarity !== null) {
    out.push(["Similarity", `${f.similarity.toFixed(3)} (pixels; 1: the same)`],
             ["Difference", `${f.difference.toFixed(3)} (its most different part; 0: none)`]);
  }
  return out;
}

/** The card of ``f``, the file at ``at`` in ``group``; ``open``: the address of its full
 * image (the detail view). */
export function fileCard(group, f, at, { open }) {
  const { name } = split(f.path);
  const kept = f.action === "keep";
  const review = kept && f.faint;  // a faint copy the plan keeps until told to act on it
  const picture = element("a", { class: "picture", href: open, title: "The full image (O)",
                                 "aria-label": `The full image of ${name}` },
                          element("img", { src: thumbnail(f.id), alt: "", loading: "lazy" }));
  const keep = element("button", { type: "button", class: "keep", "aria-pressed": kept,
                                   "aria-keyshortcuts": "K", "aria-label": `Keep ${name}`,
                                   title: "Keep this file or not (K or Space)" },
                       kept ? "✓ Keep" : "Keep");
  const verdict = element("span", { class: `verdict ${f.action}`,
                                    text: f.to ? `moved to ${f.to}`
                                      : review ? "kept for review" : ACTIONS[f.action] });
  const facts = [
    ["Folder", where(f.path) || "·"],
    ["Pixels", f.width ? `${f.width} × ${f.height}` : "unknown"],
    ["Size", bytes(f.size)],
    ["Modified", new Date(f.mtime_ns / 1e6).toLocaleString()],
    ...likeness(group, f, at),
  ];
  const list = element("dl", {}, ...facts.flatMap(([term, value]) => [
    element("dt", { text: term }), element("dd", { text: value })]));
  const apart = element("button", { type: "button", class: "apart button",
                                    "aria-keyshortcuts": "D",
                                    "aria-label": `${name} is not a duplicate of the others`,
                                    title: "Not a duplicate of the others (D)" },
                        "Not a duplicate");
  return element("li", { class: `member ${review ? "for-review" : kept ? "kept" : "acted"}`,
                         title: f.path },
                 picture, element("div", { class: "member-head" }, keep, verdict),
                 element("p", { class: "name", text: name }), list,
                 element("p", { class: "reason", text: f.reason }), apart);
}

/** The row of group ``n`` in the list: its number, kind and first pictures, a link. */
export function groupRow(group, n, href, isCurrent) {
  const link = element("a", { href, "data-group": n,
                              "aria-label": groupTitle(group, n) },
                       element("span", { class: "number", text: n.toLocaleString() }),
                       element("span", { class: "thumbs" }, ...group.files
                         .slice(0, LIST_THUMBNAILS).map((f) => element("img", {
                           src: thumbnail(f.id), alt: "", loading: "lazy" }))),
                       element("span", { class: "count",
                                         text: `${group.files.length} files` }));
  if (isCurrent) link.setAttribute("aria-current", "true");
  return element("li", {}, link);
}
