// The collection: every image as a tile, filtered by name and folder and sorted. The grid is
// laid out in blocks of whole rows that hold their place before they load (one request
// each, as they come near the window), so that the scroll bar reaches any part at once.
import { api } from "../api.js";
import { fail } from "../messages.js";
import { format, go, withParams } from "../router.js";
import { root, step, tile, where } from "../tiles.js";

const ROWS = 8;  // rows of tiles per block
const NEAR = "1000px 0px";  // blocks this close to the window load
const NAME_WAIT_MS = 300;  // typing in the name box: the filter follows once this quiet

const $ = (id) => document.getElementById(id);
export const section = $("collection");
const grid = $("grid");
// The grid of one filter: its images by position (fetched so far), its blocks, its layout.
let state = null;
let folderCounts = null;

export function key(route) {
  const { name, folder, sort } = filters(route);
  return `?name=${name}&folder=${folder}&sort=${sort}`;
}

export function title() { return "retrieve"; }

/** The folders for the filter: every folder that holds images, its subfolders' counted in. */
export function setFolders(folders) {
  folderCounts = new Map();
  const top = root.length > 1 ? root.slice(0, -1) : "/";
  for (const { path, images } of folders) {
    for (let f = path; ; f = f.slice(0, f.lastIndexOf("/")) || "/") {
      folderCounts.set(f, (folderCounts.get(f) || 0) + images);
      if (f.length <= top.length) break;
    }
  }
  const select = $("folder");
  const chosen = select.value;
  select.replaceChildren(new Option("All folders", ""));
  const tree = (path) => path.replaceAll("/", "\0");  // a folder, then what is inside it
  for (const [path, count] of [...folderCounts].sort(([a], [b]) => (tree(a) < tree(b) ? -1 : 1))) {
    const inside = where(`${path}/x`);
    if (!inside) continue;  // the root: "All folders"
    const depth = inside.split("/").length - 1;
    select.append(new Option(`${"\u2003".repeat(depth)}${inside.split("/").pop()} `
                             + `(${count.toLocaleString()})`, path));
  }
  select.value = chosen;
}

function filters(route) {
  const p = (key) => route.params.get(key) || "";
  return { name: p("name"), folder: p("folder"), sort: p("sort") || "path" };
}

export async function enter(route, live) {
  const k = key(route);
  const f = filters(route);
  if (document.activeElement !== $("name")) $("name").value = f.name;  // not while typing
  $("sort").value = f.sort;
  if (f.folder && ![...$("folder").options].some((o) => o.value === f.folder)) {
    $("folder").append(new Option(where(`${f.folder}/x`) || f.folder, f.folder));
  }
  $("folder").value = f.folder;
  if (state && state.key === k) {  // kept as it was: the place is the scroll's
    state.route = route;
    return;
  }
  state = { key: k, route, filters: f, items: new Map(), total: null, cols: 0, size: 0,
            tileHeight: 0, gap: 0, blocks: [], current: 0 };
  grid.replaceChildren();
  await fetchRange(0, 1);  // the total
  if (!live()) return;
  $("empty").hidden = state.total > 0;
  layout();
  await loadBlock(0);
}

async function fetchRange(start, count) {
  const { name, folder, sort } = state.filters;
  const query = new URLSearchParams({ offset: start, limit: count, sort });
  if (name) query.set("name", name);
  if (folder) query.set("folder", folder);
  const mine = state;
  const body = await api(`/api/items?${query}`);
  mine.total = body.total;
  body.items.forEach((item, n) => mine.items.set(start + n, item));
}

function measure() {
  const width = grid.clientWidth;
  const style = getComputedStyle(document.documentElement);
  const rem = parseFloat(style.fontSize);
  const tileMin = parseFloat(style.getPropertyValue("--tile"));
  const gap = parseFloat(style.getPropertyValue("--gap")) * rem;
  const cols = Math.max(1, Math.floor((width + gap) / (tileMin + gap)));
  const tileWidth = (width - gap * (cols - 1)) / cols;
  const caption = parseFloat(style.getPropertyValue("--caption")) * rem;
  return { cols, gap, tileHeight: tileWidth + caption };
}

/** Blocks of whole rows for the grid's width (again when the number of columns changes). */
function layout() {
  const { cols, gap, tileHeight } = measure();
  if (cols === state.cols && Math.abs(tileHeight - state.tileHeight) < 1) return;
  const anchor = firstVisible();
  Object.assign(state, { cols, gap, tileHeight, size: cols * ROWS });
  grid.style.setProperty("--cols", cols);
  state.observer?.disconnect();
  state.observer = new IntersectionObserver((seen) => {
    for (const s of seen) if (s.isIntersecting) loadBlock(Number(s.target.dataset.block));
  }, { rootMargin: NEAR });
  state.blocks = [];
  const blocks = [];
  for (let n = 0; n * state.size < state.total; n++) {
    const block = document.createElement("div");
    block.className = "block";
    block.setAttribute("role", "none");
    block.dataset.block = n;
    const rows = Math.ceil(Math.min(state.size, state.total - n * state.size) / cols);
    const height = rows * tileHeight + (rows - 1) * gap;
    block.style.height = `${height}px`;
    block.style.containIntrinsicSize = `auto ${height}px`;
    blocks.push(block);
    state.blocks.push({ element: block, loaded: false });
    state.observer.observe(block);
  }
  grid.replaceChildren(...blocks);
  if (anchor > 0) scrollToIndex(anchor);
}

async function loadBlock(n) {
  const mine = state;
  const block = mine.blocks[n];
  if (!block || block.loaded) return;
  block.loading ??= (async () => {
    const start = n * mine.size;
    const end = Math.min(mine.total, start + mine.size);
    try {
      let first = start;
      while (first < end && mine.items.has(first)) first++;
      if (first < end) await fetchRange(first, end - first);
    } catch (e) {
      block.loading = null;
      fail(e);
      return;
    }
    if (mine !== state || mine.blocks[n] !== block) return;  // another filter or width since
    const cells = [];
    for (let i = start; i < end && mine.items.has(i); i++) {
      const item = mine.items.get(i);
      const link = tile(item.id, item.path, format({ view: "similar", id: item.id }), { index: i });
      link.tabIndex = i === mine.current ? 0 : -1;
      const cell = document.createElement("div");
      cell.setAttribute("role", "listitem");
      cell.append(link);
      cells.push(cell);
    }
    block.element.replaceChildren(...cells);
    block.element.style.height = "";
    block.loaded = true;
    position();  // the folder of the first image shown, now that it is known
  })();
  return block.loading;
}

/** The index of the first tile at the top of the window, below the sticky bar. */
function firstVisible() {
  if (!state || !state.size || !state.blocks.length) return 0;
  const top = section.querySelector(".bar").getBoundingClientRect().bottom;
  const y = top - grid.getBoundingClientRect().top;
  const row = state.tileHeight + state.gap;
  const block = ROWS * row;
  const n = Math.max(0, Math.floor(y / block));
  const within = Math.max(0, Math.floor((y - n * block) / row));
  return Math.min(state.total - 1, n * state.size + within * state.cols);
}

function scrollToIndex(i) {
  const n = Math.floor(i / state.size);
  const row = Math.floor((i % state.size) / state.cols);
  const barHeight = section.querySelector(".bar").offsetHeight;
  const y = state.blocks[n].element.getBoundingClientRect().top + scrollY
            + row * (state.tileHeight + state.gap) - barHeight;
  scrollTo(0, y);
}

function position() {
  if (section.hidden || !state || state.total === null) return;
  const at = firstVisible();
  const item = state.items.get(at);
  const folder = item && state.filters.sort === "path" ? where(item.path) : "";
  const place = folder ? ` · ${folder}` : "";
  $("position").textContent = state.total
    ? `${(at + 1).toLocaleString()} of ${state.total.toLocaleString()}${place}` : "";
  // The grid's one tab stop follows the window when the focused tile scrolled away.
  const stop = grid.querySelector("a.tile[tabindex='0']");
  const box = stop?.getBoundingClientRect();
  if (!stop || box.bottom < 0 || box.top > innerHeight) {
    const first = grid.querySelector(`a.tile[data-index="${at}"]`);
    if (first && document.activeElement !== stop) {
      if (stop) stop.tabIndex = -1;
      first.tabIndex = 0;
      state.current = at;
    }
  }
}

async function move(e) {
  const from = document.activeElement;
  if (!from.matches("a.tile") || e.altKey || e.ctrlKey || e.metaKey) return;
  const rows = Math.max(1, Math.floor(innerHeight / (state.tileHeight + state.gap)) - 1);
  const to = step(e.key, Number(from.dataset.index), state.total, state.cols, rows);
  if (to === null) return;
  e.preventDefault();
  await loadBlock(Math.floor(to / state.size));
  const target = grid.querySelector(`a.tile[data-index="${to}"]`);
  if (!target) return;
  target.focus();
  target.scrollIntoView({ block: "nearest" });
}

export function setup() {
  grid.addEventListener("keydown", move);
  grid.addEventListener("focusin", (e) => {
    if (!e.target.matches("a.tile")) return;
    grid.querySelectorAll("a.tile[tabindex='0']").forEach((a) => { a.tabIndex = -1; });
    e.target.tabIndex = 0;
    state.current = Number(e.target.dataset.index);
  });
  new ResizeObserver(() => { if (state && state.total !== null && !section.hidden) layout(); })
    .observe(grid);
  let ticking = false;
  addEventListener("scroll", () => {
    if (ticking) return;
    ticking = true;
    requestAnimationFrame(() => { ticking = false; position(); });
  }, { passive: true });
  let typing = null;
  const refilter = (changes, replace) => {
    if (!state) return;
    go(withParams(state.route, changes), { replace });
  };
  $("name").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => refilter({ name: $("name").value || null }, true), NAME_WAIT_MS);
  });
  $("folder").addEventListener("change", () => refilter({ folder: $("folder").value || null }));
  $("sort").addEventListener("change", () => refilter({ sort: $("sort").value }));
}

/** After the view is shown: the position line, and the tile of ``id`` focused if shown. */
export function shown(id) {
  position();
  if (id !== null) grid.querySelector(`a.tile[data-id="${id}"]`)?.focus({ preventScroll: true });
}

export function context() { return null; }
