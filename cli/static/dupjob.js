// The search for duplicates as the server runs it: a background job, started once (a second
// click, a second tab or another person's browser joins it), followed while it runs (each
// change as it comes, /api/duplicates/status?after=VERSION), and cancelled.
import { api } from "./api.js";

const STAGES = {
  starting: ["Starting", ""],
  hashing: ["Comparing the bytes of files of the same size", "files"],
  calibrating: ["Calibrating the threshold on copies of the images", "images"],
  searching: ["Looking for each image's nearest neighbours", "images"],
  sketching: ["Sketching each image for the copies the network misses", "files"],
  verifying: ["Comparing the pixels of the pairs found", "pairs"],
  weighing: ["Looking for faint pictures among the copies (kept for review)", "files"],
  done: ["Done", ""],
};
const RETRY_MS = 2000;  // after a lost answer, before asking again

const listeners = new Set();
let latest = { version: -1, job: null };
let following = false;

export const running = (job) => job?.state === "running";
export const current = () => latest.job;

/** Call ``fn(job)`` at every change of the latest search (null: none yet). */
export function onChange(fn) { listeners.add(fn); }

const same = (a, b) => a && b && a.id === b.id && a.started === b.started;

function publish(status) {
  // An older answer about the same search, arriving late, is dropped (another search, or a
  // server started again, counts its versions anew).
  if (status.version < latest.version && (same(status.job, latest.job) || !status.job)) return;
  latest = status;
  for (const fn of listeners) fn(status.job);
  if (running(status.job)) follow();
}

async function follow() {
  if (following) return;
  following = true;
  try {
    while (running(latest.job)) {
      try {
        publish(await api(`/api/duplicates/status?after=${latest.version}`));
      } catch {
        await new Promise((resolve) => { setTimeout(resolve, RETRY_MS); });
      }
    }
  } finally {
    following = false;
  }
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                     body: JSON.stringify(body) });
}

/** Start the search with ``settings`` (or join it, or take its kept result); an ApiError of
 * status 409 while one with other settings runs (then followed, to say how it goes). */
export async function start(settings) {
  try {
    const status = await post("/api/duplicates/start", settings);
    publish(status);
    return status.job;
  } catch (e) {
    if (e.status === 409) await refresh();
    throw e;
  }
}

export async function cancel() { publish(await post("/api/duplicates/cancel", {})); }

export async function refresh() { publish(await api("/api/duplicates/status")); }

export function seconds(job) {
  const s = job.seconds;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** The search in words: its stage, how far, how long. */
export function words(job) {
  if (!job) return "";
  if (job.state === "done") return `Searched in ${seconds(job)}.`;
  if (job.state === "failed") return `The search failed: ${job.error}`;
  if (job.state === "cancelled") {
    return `Cancelled after ${seconds(job)}. What it had done is kept: Find duplicates goes on `
      + "from there.";
  }
  const [stage, unit] = STAGES[job.stage] || [job.stage, ""];
  const count = job.total ? `: ${job.done.toLocaleString()} of ${job.total.toLocaleString()} `
    + `${unit}` : "";
  return `${job.cancelling ? "Cancelling… " : ""}${stage}${count} (${seconds(job)})`;
}

/** The share of the stage done (0 to 1), null when unknown. */
export function share(job) { return job?.total ? job.done / job.total : null; }
