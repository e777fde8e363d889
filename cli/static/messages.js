// Messages that stay until dismissed or replaced: one line each, read out by screen readers.
const box = document.getElementById("messages");
const KEPT = 3;  // messages shown at once, the newest last

export function say(text, { error = false } = {}) {
  for (const old of box.querySelectorAll(".message")) {
    if (old.firstChild.textContent === text) old.remove();  // the same one again: moved last
  }
  const line = document.createElement("p");
  line.className = error ? "message error" : "message";
  line.setAttribute("role", error ? "alert" : "status");
  const words = document.createElement("span");
  words.textContent = text;
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "icon";
  dismiss.setAttribute("aria-label", "Dismiss");
  dismiss.textContent = "×";
  dismiss.addEventListener("click", () => line.remove());
  line.append(words, dismiss);
  // A modal dialog hides everything outside it: the messages go where they can be seen.
  const host = document.querySelector("dialog[open]") || document.body;
  if (box.parentElement !== host) host.append(box);
  box.append(line);
  while (box.children.length > KEPT) box.firstElementChild.remove();
}

export function fail(error) { say(error.message || String(error), { error: true }); }

export function rehome() {
  const host = document.querySelector("dialog[open]") || document.body;
  if (box.parentElement !== host) host.append(box);
}
