// What a person decides about the duplicates, and the plan the server makes of it. The files
// kept by choice are kept in the browser per index and search settings; they reach the server
// as the plan's rules, each group's chosen file a `prefer` file and any other it keeps a
// `protect` file (what `retrieve duplicates --prefer FILE --protect FILE` does), so that the
// server's plan code makes the plan, downloaded or applied, never this page.
import { api, url } from "./api.js";

const STORE = "retrieve-duplicates";
let where = "";  // the index and settings the choices belong to
let chosen = {};  // group key -> the paths it keeps, the preferred one first

function read() {
  try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch { return {}; }
}

function write(all) {
  try { localStorage.setItem(STORE, JSON.stringify(all)); } catch { /* kept for the page */ }
}

/** Use the choices made for ``index`` searched with ``settings``. */
export function load(index, settings) {
  where = `${index}\n${JSON.stringify(settings)}`;
  chosen = read().choices?.[where] || {};
}

function save() {
  const all = read();
  all.choices = { [where]: chosen };  // the latest index and settings only
  write(all);
}

/** The plan's action, keep rule and whether it acts on faint copies, as last chosen (kept
 * across visits). */
export function preferences() {
  return { action: "trash", keep: "largest", move_to: "", act_on_faint: false,
           ...(read().preferences || {}) };
}

export function setPreferences(prefs) {
  const all = read();
  all.preferences = prefs;
  write(all);
}

export const groupKey = (group) => group.files.map((f) => f.id).sort((a, b) => a - b).join(",");
export const count = () => Object.keys(chosen).length;

export function forget() {
  chosen = {};
  save();
}

/** Keep ``file`` of ``group`` or not; false when that would leave the group nothing kept. */
export function toggle(group, file) {
  const kept = group.files.filter((f) => f.action === "keep").map((f) => f.path);
  const next = kept.includes(file.path) ? kept.filter((p) => p !== file.path)
    : [...kept, file.path];
  if (!next.length) return false;
  chosen[groupKey(group)] = next;
  save();
  return true;
}

/** The request's rules: the plan's settings and the choices as prefer and protect files. */
export function rules(prefs) {
  const lists = Object.values(chosen);
  return {
    action: prefs.action,
    move_to: prefs.action === "move" ? prefs.move_to || null : null,
    keep: [prefs.keep],
    prefer: lists.map((paths) => paths[0]),
    protect: lists.flatMap((paths) => paths.slice(1)),
    act_on_faint: Boolean(prefs.act_on_faint),
  };
}

function post(path, body) {
  return { method: "POST", headers: { "Content-Type": "application/json" },
           body: JSON.stringify(body) };
}

export function groups(body) { return api("/api/duplicates/groups", post("", body)); }

/** The plan's text as the server writes it (a 4xx said as its one line). */
async function planText(body) {
  let response;
  try {
    response = await fetch(url("/api/duplicates/plan"), post("", body));
  } catch {
    throw new Error("No answer from the server: is `retrieve serve` still running?");
  }
  const text = await response.text();
  if (!response.ok) {
    let message = `The server answered ${response.status}`;
    try { message = JSON.parse(text).error; } catch { /* said above */ }
    throw new Error(message);
  }
  return text;
}

/** Files per action, the bytes acted on and the faint copies kept for review, as `retrieve
 * duplicates --plan` sums them. */
export function summary(plan) {
  const files = {};
  let bytes = 0;
  let review = 0;
  for (const g of plan.groups) {
    for (const f of g.files) {
      files[f.action] = (files[f.action] || 0) + 1;
      if (f.action !== "keep") bytes += f.size;
      else if (f.faint) review += 1;
    }
  }
  return { files, bytes, review };
}

const DONE = { trash: "to the trash", move: "moved", hardlink: "hard-linked",
               symlink: "symbolic-linked" };

export function sentence({ files, bytes, review = 0 }, megabytes) {
  const acts = Object.entries(files).filter(([a]) => a !== "keep")
    .map(([a, n]) => `${n.toLocaleString()} ${n === 1 ? "file" : "files"} ${DONE[a]}`);
  const kept = files.keep || 0;
  return `${acts.join(", ") || "nothing done"}${bytes ? ` (${megabytes(bytes)})` : ""}, `
    + `${kept.toLocaleString()} kept`
    + (review ? ` (${review.toLocaleString()} faint ${review === 1 ? "copy" : "copies"} `
      + "for review)" : "");
}

/** Download the plan (plan.json) and return it. */
export async function download(body) {
  const text = await planText(body);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  link.download = "plan.json";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 0);
  return JSON.parse(text);
}

/** The plan as the server wrote it: {text, plan}. The text is what is applied, as it came (a
 * file's mtime_ns is more than a JavaScript number holds exactly). */
export async function make(body) {
  const text = await planText(body);
  return { text, plan: JSON.parse(text) };
}

/** Apply the plan ``text`` on the server: (its outcome, the files it took away). */
export async function apply(text) {
  const outcome = await api("/api/duplicates/apply", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: text });
  const { gone } = await api("/api/duplicates/gone");
  forget();  // the files changed: the choices were about them
  return [outcome, gone.filter((g) => g.journal.endsWith(`${outcome.journal}.jsonl`))];
}

export function undo(journal) { return api("/api/duplicates/undo", post("", { journal })); }
