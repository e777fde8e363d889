// The page of `retrieve serve`: the collection as a grid, the images most like any of them or
// like a file of your own (the paper's Figure 4, live), the duplicates, one image in detail.
// Each is an address (router.js), so that Back, reload and bookmarks work; each view is a
// module of views/ with key(route), enter(route, live), context(id) and a section.
// Only the server's own API is used: no other network, no library.
import { api } from "./api.js";
import * as dupjob from "./dupjob.js";
import { fail } from "./messages.js";
import * as router from "./router.js";
import { setRoot } from "./tiles.js";
import * as uploads from "./uploads.js";
import * as collection from "./views/collection.js";
import * as detail from "./views/detail.js";
import * as duplicates from "./views/duplicates.js";
import * as results from "./views/results.js";

const $ = (id) => document.getElementById(id);
const VIEWS = { "": collection, similar: results, upload: results, duplicates };
let current = null;  // {view, key}
let renders = 0;  // the latest render(): an older one still waiting gives way
let limits = null;
let lastCollection = { view: "", id: null, params: new URLSearchParams() };

async function render(route, state) {
  const mine = ++renders;
  const live = () => mine === renders;
  const view = VIEWS[route.view] ?? collection;
  const key = view.key(route);
  const from = current;
  if (view === collection) lastCollection = router.withParams(route, { open: null });
  if (!current || current.key !== key) {
    for (const v of new Set(Object.values(VIEWS))) v.section.hidden = v !== view;
    current = { view, key };
    try {
      await view.enter(route, live);
    } catch (e) {
      if (live()) fail(e);
    }
    if (!live()) return;
    document.title = view.title();
    scrollTo(0, state?.scroll ?? 0);
    if (view === collection) {
      // Back from an image's results: its tile has the focus again.
      collection.shown(from && from.view === results && route.view === "" ? lastQuery(from) : null);
    } else if (from) {
      view.section.querySelector("h2").focus({ preventScroll: true });
    }
  } else {
    if (view === collection) await view.enter(route, live);  // its filter fields follow
    else if (view.update) await view.update(route, live);  // another group of duplicates
    if (state?.scroll !== undefined && !route.params.has("open")) scrollTo(0, state.scroll);
  }
  if (!live()) return;
  const open = route.params.get("open");
  if (open !== null) await detail.show(open, route, view.context(open));
  else detail.hide();
}

function lastQuery(from) {
  const id = from.key.match(/^similar\/(\d+)/);
  return id ? id[1] : null;
}

function leave() {  // Escape, or the Back button of a view
  router.back(lastCollection);
}

async function upload(file) {
  const k = $("k").value || "10";
  try {
    const found = await results.search(file, k, limits);
    const key = await uploads.keep(file);
    results.preset(key, k, found);
    await router.go({ view: "upload", id: key, params: new URLSearchParams({ k }) });
  } catch (e) { fail(e); }
}

async function header() {
  try {
    const [info, folders] = await Promise.all([api("/api/info"), api("/api/folders"),
      api("/api/limits").then((l) => { limits = l; })]);
    setRoot(folders.root);
    duplicates.setServer(limits, info.index);
    collection.setFolders(folders.folders);
    $("summary").textContent = `${info.count.toLocaleString()} images · ${folders.root}`;
    const weights = info.weights === "imagenet" ? "ImageNet weights" : info.weights;
    $("summary").title = `${info.layer}, ${info.dim} dimensions · ${info.factory} index · `
      + `${weights} · built ${info.built_at}`;
  } catch (e) {
    $("summary").textContent = e.message;
    throw e;
  }
}

/** The header's "Find duplicates" says how a search in the background goes, in any view. */
function searching(job) {
  const link = $("find-duplicates");
  const share = dupjob.share(job);
  link.textContent = !dupjob.running(job) ? "Find duplicates"
    : `Finding duplicates… ${share === null ? "" : `${Math.round(share * 100)}%`}`.trim();
  link.title = dupjob.running(job) ? dupjob.words(job) : "";
  const { threshold, verify } = job?.settings || {};
  link.href = router.format({ view: "duplicates", params: new URLSearchParams(
    dupjob.running(job) ? { threshold: threshold ?? "", verify: verify ? "" : "0" } : {}) });
}

function setup() {
  dupjob.onChange(searching);
  collection.setup();
  results.setup(router.go);
  duplicates.setup();
  detail.setup();
  for (const back of document.querySelectorAll("#back, .back")) {
    back.addEventListener("click", leave);
  }
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || detail.isOpen() || e.defaultPrevented) return;
    if (e.target.matches("input[type=search]") && e.target.value) return;  // clears the box
    if (current && current.view !== collection) { e.preventDefault(); leave(); }
  });
  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";  // the same file may be picked again
    if (file) upload(file);
  });
  addEventListener("dragover", (e) => { e.preventDefault(); $("drop").hidden = false; });
  $("drop").addEventListener("dragleave", () => { $("drop").hidden = true; });
  addEventListener("drop", (e) => {
    e.preventDefault();
    $("drop").hidden = true;
    if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
  });
}

setup();
header().then(() => router.start(render), fail);
dupjob.refresh().catch(() => {});  // a search started elsewhere shows its progress here too
