// Tiles (a link with a thumbnail, the file's name and folder, and in results how close it
// is) and the keys that move between them: arrows, Home, End, Page Up and Page Down.
import { thumbnail } from "./api.js";

export let root = "";  // the folder every image sits under: captions show the rest
export function setRoot(folder) { root = folder.endsWith("/") ? folder : `${folder}/`; }

export function split(path) {
  const cut = path.lastIndexOf("/");
  return { folder: path.slice(0, Math.max(cut, 0)) || "/", name: path.slice(cut + 1) };
}

/** The folder of ``path`` below the root ("" for the root itself). */
export function where(path) {
  const { folder } = split(path);
  const inside = `${folder}/`.startsWith(root) ? `${folder}/`.slice(root.length) : `${folder}/`;
  return inside.replace(/\/$/, "");
}

export function percent(share) { return `${Math.round(share * 100)}%`; }

export function closeness(share) {
  return `closer than the nearest neighbour of ${percent(share)} of the collection's images`;
}

/** A tile for the image ``id`` at ``path``, a link to ``href``; ``share``: how close. */
export function tile(id, path, href, { share = null, keep = false, index = null } = {}) {
  const { name } = split(path);
  const folder = where(path);
  const link = document.createElement("a");
  link.className = keep ? "tile keep" : "tile";
  link.href = href;
  link.dataset.id = id;
  if (index !== null) link.dataset.index = index;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = "";  // the link's name says what it is
  img.src = thumbnail(id);
  img.addEventListener("error", () => {  // a file gone since it was indexed
    link.classList.add("missing");
    link.title = `${path}: can no longer be read`;
  });
  const caption = document.createElement("span");
  caption.className = "caption";
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name;
  caption.append(label);
  let spoken = `${name}${folder ? `, in ${folder}` : ""}`;
  if (share !== null) {
    const near = document.createElement("span");
    near.className = "closeness";
    near.textContent = percent(share);
    near.title = closeness(share);
    caption.append(near);
    spoken += `, ${closeness(share)}`;
  }
  if (keep) {
    const badge = document.createElement("span");
    badge.className = "closeness";
    badge.textContent = "keep";
    caption.append(badge);
    spoken = `keep: ${spoken}`;
  }
  const place = document.createElement("span");
  place.className = "where";
  place.textContent = folder || "·";
  place.title = split(path).folder;
  caption.append(place);
  link.setAttribute("aria-label", spoken);
  link.title = path;
  link.append(img, caption);
  return link;
}

/** The item that holds a tile in a list (role listitem). */
export function cell(link) {
  const item = document.createElement(link ? "li" : "div");
  if (link) item.append(link);
  return item;
}

/** The columns of the grid ``list`` is laid out in. */
export function columns(list) {
  return getComputedStyle(list).gridTemplateColumns.split(" ").filter(Boolean).length || 1;
}

/** Where a key moves from tile ``at`` among ``count`` in ``cols`` columns, or null. */
export function step(key, at, count, cols, rowsPerScreen = 3) {
  const to = {
    ArrowRight: at + 1, ArrowLeft: at - 1, ArrowDown: at + cols, ArrowUp: at - cols,
    Home: 0, End: count - 1,
    PageDown: at + cols * rowsPerScreen, PageUp: at - cols * rowsPerScreen,
  }[key];
  if (to === undefined) return null;
  return Math.max(0, Math.min(count - 1, to));
}

/** The tile a key moves to from ``from`` among ``all``, by where they are on the screen:
 * across groups and rows of any length, as the eye reads them. */
function toward(key, from, all) {
  const box = (a) => a.getBoundingClientRect();
  const here = box(from);
  const at = all.indexOf(from);
  const rows = Math.max(1, Math.floor(innerHeight / Math.max(here.height, 1)) - 1);
  if (key === "ArrowRight" || key === "ArrowLeft" || key === "Home" || key === "End") {
    return all[step(key, at, all.length, 1)];
  }
  const down = key === "ArrowDown" || key === "PageDown";
  if (!down && key !== "ArrowUp" && key !== "PageUp") return null;
  let target = from;
  for (let n = key.startsWith("Page") ? rows : 1; n > 0; n--) {
    const mid = box(target).left + here.width / 2;
    const y = box(target).top;
    const beyond = all.filter((a) => (down ? box(a).top > y + 1 : box(a).top < y - 1));
    if (!beyond.length) break;
    const rowTop = down ? Math.min(...beyond.map((a) => box(a).top))
                        : Math.max(...beyond.map((a) => box(a).top));
    const row = beyond.filter((a) => Math.abs(box(a).top - rowTop) < 1);
    const off = (a) => Math.abs(box(a).left + here.width / 2 - mid);
    target = row.reduce((best, a) => (off(a) < off(best) ? a : best));
  }
  return target;
}

/** One tab stop for the tiles in ``container`` (the last one focused), the keys moving
 * between them. */
export function navigable(container) {
  container.addEventListener("focusin", (e) => {
    if (!e.target.matches("a.tile")) return;
    for (const a of container.querySelectorAll("a.tile")) a.tabIndex = a === e.target ? 0 : -1;
  });
  container.addEventListener("keydown", (e) => {
    if (!document.activeElement.matches("a.tile") || e.altKey || e.ctrlKey || e.metaKey) return;
    const to = toward(e.key, document.activeElement, [...container.querySelectorAll("a.tile")]);
    if (!to) return;
    e.preventDefault();
    to.focus();
    to.scrollIntoView({ block: "nearest" });
  });
}

/** Make the first tile of ``list`` its tab stop (after its tiles change). */
export function firstStop(list) {
  list.querySelectorAll("a.tile").forEach((a, n) => { a.tabIndex = n === 0 ? 0 : -1; });
}
