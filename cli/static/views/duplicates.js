// The review of the duplicates ("#/duplicates/N", N the group shown): the search as the
// server's background job (progress, Cancel), then one group at a time, its files side by side
// with their facts, the groups a page at a time beside it (never all of them in the page), the
// keyboard, "not duplicates", and the plan: downloaded, or applied and undone where the server
// allows it (retrieve serve --allow-actions).
import { api, megabytes } from "../api.js";
import * as job from "../dupjob.js";
import * as plan from "../dupplan.js";
import { fail, say } from "../messages.js";
import { format, go, parse, withParams } from "../router.js";
import { split } from "../tiles.js";
import { fileCard, groupRow, groupTitle } from "./dupcards.js";

const PAGE = 50;  // groups fetched, and listed, at a time
const $ = (id) => document.getElementById(id);
export const section = $("duplicates");
let limits = { allow_actions: false, move_to: null };
let index = "";  // the index folder: the choices kept in the browser are its
// What is shown: the address, its settings, the page of groups around the one shown.
let shown = null;  // {key, route, settings, page: {offset, total, images, groups}, n}
let lastOutcome = null;  // {journal, ...}: the latest plan applied here, for Undo
// Each group's files in the order first shown: the server puts the kept file first, and a
// card should not move away when it is kept.
const seen = new Map();  // group key -> ids

function settingsOf(route) {
  const threshold = route.params.get("threshold");
  return { threshold: threshold === null || threshold === "" ? null : Number(threshold),
           verify: route.params.get("verify") !== "0" };
}

export function key(route) {
  const { threshold, verify } = settingsOf(route);
  return `duplicates?threshold=${threshold ?? ""}&verify=${verify}`;
}

export function title() {
  return shown?.page ? `Group ${shown.n} of ${shown.page.total} · Duplicates · retrieve`
    : "Duplicates · retrieve";
}

const number = (route) => Math.max(1, parseInt(route.id, 10) || 1);
const isShown = () => !section.hidden && shown && key(parse()) === shown.key;

/** What the server allows (serve --allow-actions, --move-to) and the index's folder. */
export function setServer(serverLimits, indexFolder) {
  limits = serverLimits;
  index = indexFolder;
}

export async function enter(route, live) {
  const settings = settingsOf(route);
  shown = { key: key(route), route, settings, page: null, n: number(route), live };
  plan.load(index, settings);
  $("dup-threshold").value = settings.threshold ?? "";
  $("dup-verify").checked = settings.verify;
  $("dup-review").hidden = true;
  $("dup-plan").hidden = true;
  $("group-nav").hidden = true;
  $("duplicates-title").textContent = "Duplicates";
  await begin(settings);
}

async function begin(settings) {
  try {
    await job.start(settings);  // followed(): the groups once it is done
  } catch (e) {
    if (e.status !== 409) throw e;
    shown.waiting = true;  // another search runs: ours starts when it ends
    say("A search with other settings is running: this one starts when it ends (or cancel it).");
  }
}

/** The same view at another group, or with an image opened over it. */
export async function update(route, live) {
  shown.route = route;
  shown.live = live;
  if (shown.page) await showGroup(number(route), live);
}

/** Follows the search: its words, the progress bar, the buttons; the groups once done. */
function followed(j) {
  const active = job.running(j);
  if (!isShown()) return;
  const mine = j && j.settings.threshold === shown.settings.threshold
    && j.settings.verify === shown.settings.verify;
  $("dup-stage").textContent = mine || active ? job.words(j) : "";
  const state = j ? `${j.id} ${j.state}` : "";
  if (state !== shown.said) {  // read out as it starts and ends, not at every step
    shown.said = state;
    $("dup-announce").textContent = j ? job.words(j) : "";
  }
  const bar = $("dup-progress");
  bar.hidden = !active;
  if (job.share(j) === null) bar.removeAttribute("value");
  else bar.value = job.share(j);
  $("dup-find").disabled = active;
  $("dup-cancel").hidden = !active;
  $("dup-cancel").disabled = Boolean(j?.cancelling);
  if (active) return;
  if (shown.waiting) {
    shown.waiting = false;
    begin(shown.settings).catch(fail);
  } else if (mine && j.state === "done" && !shown.page && !shown.loading) {
    showGroup(shown.n, shown.live).catch(fail);
  }
}

/** The plan's action and keep rule as chosen; the server's move folder where it has one. */
function preferences() {
  const prefs = plan.preferences();
  return limits.move_to ? { ...prefs, move_to: limits.move_to } : prefs;
}

function body(offset) {
  return { ...shown.settings, ...plan.rules(preferences()), offset, limit: PAGE };
}

async function loadPage(offset) {
  const page = await plan.groups(body(offset));
  for (const group of page.groups) {
    const k = plan.groupKey(group);
    if (!seen.has(k)) seen.set(k, group.files.map((f) => f.id));
    const order = seen.get(k);
    group.files.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  }
  return { offset, total: page.total, images: page.images, groups: page.groups };
}

async function showGroup(n, live = () => true, { refetch = false } = {}) {
  let page = shown.page;
  const offset = Math.floor((n - 1) / PAGE) * PAGE;
  if (!page || refetch || page.offset !== offset) {
    shown.loading = true;
    try {
      page = await loadPage(offset);
      if (page.total && n > page.total) {  // fewer groups than the address says: the last
        n = page.total;
        const last = Math.floor((n - 1) / PAGE) * PAGE;
        if (last !== offset) page = await loadPage(last);
      }
    } finally {
      shown.loading = false;
    }
    if (!live() || !isShown()) return;
    shown.page = page;
  }
  if (shown.rendered?.page !== page || shown.rendered.n !== n) {  // not for an image opened
    shown.n = n;
    render();
    shown.rendered = { page, n };
  }
  if (String(n) !== shown.route.id && page.total) {  // the address names the group shown
    go(withParams({ ...shown.route, id: String(n) }, {}), { replace: true });
  }
}

function render() {
  const { page, n } = shown;
  $("duplicates-title").textContent = page.total
    ? `${page.total.toLocaleString()} groups of duplicates among `
      + `${page.images.toLocaleString()} images`
    : `No duplicates among ${page.images.toLocaleString()} images`;
  document.title = title();
  $("dup-review").hidden = !page.total;
  $("group-nav").hidden = !page.total;
  $("dup-plan").hidden = !page.total && !lastOutcome;
  showPlanForm();
  if (!page.total) return;
  $("group-position").textContent = `Group ${n.toLocaleString()} of ${page.total.toLocaleString()}`;
  $("group-previous").disabled = n <= 1;
  $("group-next").disabled = n >= page.total;
  const last = Math.min(page.offset + PAGE, page.total);
  $("dup-page").textContent = `Groups ${(page.offset + 1).toLocaleString()}–`
    + `${last.toLocaleString()} of ${page.total.toLocaleString()}`;
  $("dup-page-previous").disabled = page.offset === 0;
  $("dup-page-next").disabled = last >= page.total;
  $("dup-page-previous").parentElement.hidden = page.total <= PAGE;
  $("dup-list").replaceChildren(...page.groups.map((g, i) => groupRow(
    g, page.offset + i + 1, href(page.offset + i + 1), page.offset + i + 1 === n)));
  const row = $("dup-list").querySelector("[aria-current]");
  const list = row.closest(".group-list");  // its own scroll: the row shown, not the page moved
  if (list.scrollHeight > list.clientHeight) {
    list.scrollTop += row.getBoundingClientRect().top - list.getBoundingClientRect().top
      - (list.clientHeight - row.offsetHeight) / 2;
  }
  const group = current();
  $("dup-group-title").textContent = groupTitle(group, n);
  $("dup-files").replaceChildren(...group.files.map((f, i) => fileCard(group, f, i, {
    open: format(withParams({ ...shown.route, id: String(n) }, { open: f.id })) })));
}

const current = () => shown.page.groups[shown.n - 1 - shown.page.offset];
const href = (n) => format(withParams({ ...shown.route, id: String(n) }, { open: null }));

function showPlanForm() {
  const prefs = plan.preferences();
  $("dup-action").value = prefs.action;
  $("dup-keep").value = prefs.keep;
  $("dup-faint").checked = Boolean(prefs.act_on_faint);
  const moving = prefs.action === "move";
  $("dup-move-field").hidden = !moving;
  $("dup-move-to").readOnly = Boolean(limits.move_to);
  $("dup-move-to").value = limits.move_to || prefs.move_to;
  const canApply = limits.allow_actions && (!moving || limits.move_to);
  $("dup-apply").hidden = !canApply;
  $("dup-reset").hidden = !plan.count();
  $("dup-how").textContent = canApply
    ? "Applying writes a journal first: every file it moves, trashes or links can be put back."
    : "This server only writes the plan: apply it with `retrieve duplicates --apply plan.json`"
      + " (undo: `retrieve duplicates --undo plan.json`), or start `retrieve serve "
      + "--allow-actions` to apply it from here"
      + (moving && limits.allow_actions ? " (moves need `--move-to DIR`)." : ".");
}

/** Go to group ``n`` (in place: Back leaves the review), the focus kept on the files. */
function goTo(n, { focus = false } = {}) {
  if (!shown?.page || n < 1 || n > shown.page.total) return;
  go(withParams({ ...shown.route, id: String(n) }, { open: null }), { replace: true })
    .then(() => { if (focus) focusFile(0); });
}

function focusFile(at) {
  const toggles = [...$("dup-files").querySelectorAll("button.keep")];
  toggles[Math.max(0, Math.min(toggles.length - 1, at))]?.focus();
}

const cardLink = (at) => $("dup-files").children[at].querySelector("a").getAttribute("href");

const fileAt = (element) => {
  const card = element?.closest?.("li.member");
  return card ? [...$("dup-files").children].indexOf(card) : -1;
};

async function refresh() {
  await showGroup(shown.n, () => true, { refetch: true });
}

async function toggle(at) {
  const group = current();
  if (!plan.toggle(group, group.files[at])) {
    say("A group keeps one file at least: keep another one first.");
    return;
  }
  await refresh();
  focusFile(at);
}

/** Mark each of ``pairs`` (of ids) as not duplicates: every later search keeps them apart. */
async function apart(pairs, what) {
  for (const ids of pairs) {
    await api("/api/duplicates/not-duplicates", {
      method: "POST", body: JSON.stringify({ ids }),
      headers: { "Content-Type": "application/json" } });
  }
  say(`${what}: kept apart from now on (forget it with retrieve duplicates --forget-decision).`);
  await refresh();
  focusFile(0);
}

function apartFile(at) {  // the file against each other one of its group
  const group = current();
  const file = group.files[at];
  return apart(group.files.filter((f) => f !== file).map((f) => [file.id, f.id]),
               `${split(file.path).name} is not a duplicate of the others`).catch(fail);
}

function keys(e) {
  if (e.target.matches("input, select, textarea") || e.altKey || e.ctrlKey || e.metaKey
      || !shown?.page?.total) return;
  const at = fileAt(document.activeElement);
  const k = e.key.toLowerCase();
  const act = {
    n: () => goTo(shown.n + 1, { focus: true }),
    p: () => goTo(shown.n - 1, { focus: true }),
    arrowright: () => focusFile(at + 1),
    arrowleft: () => focusFile(at < 0 ? 0 : at - 1),
    k: () => at >= 0 && toggle(at).catch(fail),
    d: () => (e.shiftKey ? apartGroup() : at >= 0 && apartFile(at)),
    o: () => at >= 0 && go(parse(cardLink(at))),
  }[k];
  if (!act || (e.shiftKey && k !== "d")) return;
  e.preventDefault();
  act();
}

function apartGroup() {  // every two files of the group
  return apart([current().files.map((f) => f.id)], `None of group ${shown.n}`).catch(fail);
}

/** The detail view's words for ``id``: its group's kept file and how alike they are. */
export function context(id) {
  if (!shown?.page?.total) return null;
  const group = current();
  const order = group.files.map((f) => f.id);
  const at = group.files.findIndex((f) => String(f.id) === String(id));
  if (at < 0) return { order };
  const f = group.files[at];
  const kept = group.files.find((g) => g.action === "keep") || group.files[0];
  return { order, duplicate: { keep: f.action === "keep", kept: split(kept.path).name,
                               tier: group.tier, distance: f.distance,
                               similarity: f.similarity, difference: f.difference } };
}

// -- the plan: downloaded, applied, undone -------------------------------------------------
function planBody() {
  return { ...shown.settings, ...plan.rules(preferences()) };
}

async function download() {
  const made = await plan.download(planBody());
  say(`Downloaded plan.json: ${plan.sentence(plan.summary(made), megabytes)}.`);
}

let pending = null;  // the plan shown for confirmation

async function askToApply() {
  pending = await plan.make(planBody());
  $("dup-confirm-text").textContent = `Apply this plan: ${plan.sentence(
    plan.summary(pending.plan), megabytes)}?`;
  $("dup-confirm").hidden = false;
  $("dup-confirm-yes").focus();
}

async function applyNow() {
  $("dup-confirm").hidden = true;
  const [outcome, gone] = await plan.apply(pending.text);
  pending = null;
  lastOutcome = outcome;
  const problems = outcome.problems.length ? ` ${outcome.problems.length} could not be done: `
    + outcome.problems.join("; ") : "";
  showOutcome(`Done: ${plan.sentence({ files: outcome.files, bytes: outcome.bytes }, megabytes)
    .replace(/, 0 kept$/, "")}.${problems} These files are gone from the collection:`,
  gone.map((g) => g.message), true);
  await refresh();
}

async function undoNow() {
  const outcome = await plan.undo(lastOutcome.journal);
  const back = Object.values(outcome.files).reduce((a, b) => a + b, 0);
  lastOutcome = null;
  showOutcome(`Undone: ${back.toLocaleString()} ${back === 1 ? "file" : "files"} put back where `
    + `${back === 1 ? "it was" : "they were"}.${outcome.problems.length ? ` Not put back: `
    + outcome.problems.join("; ") : ""}`, [], false);
  await refresh();
}

function showOutcome(text, lines, undoable) {
  $("dup-outcome-text").textContent = text;
  $("dup-gone").replaceChildren(...lines.map((line) => {
    const li = document.createElement("li");
    li.textContent = line;
    return li;
  }));
  $("dup-undo").hidden = !undoable;
  $("dup-outcome").hidden = false;
  if (undoable) $("dup-undo").focus();
}

function changePlan() {
  const moving = $("dup-action").value === "move";
  plan.setPreferences({ action: $("dup-action").value, keep: $("dup-keep").value,
                        move_to: moving && !limits.move_to ? $("dup-move-to").value : "",
                        act_on_faint: $("dup-faint").checked });
  refresh().catch(fail);
}

function find() {
  const threshold = $("dup-threshold").value;
  const params = withParams(shown.route, { threshold: threshold === "" ? null : threshold,
                                           verify: $("dup-verify").checked ? null : "0",
                                           open: null });
  const route = { ...params, id: "1" };
  if (key(route) === shown.key) begin(shown.settings).catch(fail);  // after a cancel
  else go(route);
}

export function setup() {
  job.onChange(followed);
  section.addEventListener("keydown", keys);
  const on = (id, work) => $(id).addEventListener("click", () => { work().catch(fail); });
  on("dup-find", async () => find());
  on("dup-cancel", () => job.cancel());
  on("dup-download", download);
  on("dup-apply", askToApply);
  on("dup-confirm-yes", applyNow);
  on("dup-confirm-no", async () => { $("dup-confirm").hidden = true; pending = null; });
  on("dup-undo", undoNow);
  on("dup-reset", async () => { plan.forget(); await refresh(); });
  on("dup-apart", apartGroup);
  on("group-previous", async () => goTo(shown.n - 1));
  on("group-next", async () => goTo(shown.n + 1));
  on("dup-page-previous", async () => goTo(shown.page.offset - PAGE + 1));
  on("dup-page-next", async () => goTo(shown.page.offset + PAGE + 1));
  for (const id of ["dup-action", "dup-keep", "dup-move-to", "dup-faint"]) {
    $(id).addEventListener("change", changePlan);
  }
  $("dup-list").addEventListener("click", (e) => {  // in place, as N and P
    const link = e.target.closest("a");
    if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    goTo(Number(link.dataset.group));
  });
  $("dup-files").addEventListener("click", (e) => {
    const button = e.target.closest("button");
    if (!button) return;
    const at = fileAt(button);
    if (button.classList.contains("keep")) toggle(at).catch(fail);
    if (button.classList.contains("apart")) apartFile(at);
  });
}

export const route = () => shown?.route;
