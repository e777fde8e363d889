// The page's addresses: "#/" (the collection, ?name=&folder=&sort=), "#/similar/ID?k=10",
// "#/upload/KEY?k=10", "#/duplicates"; "&open=ID" on any of them shows one image's details.
// Every view is one, so that Back, Forward, reload and a bookmark show it again, in place.

export function parse(hash = location.hash) {
  const text = hash.replace(/^#/, "");
  const cut = text.indexOf("?");
  const path = cut < 0 ? text : text.slice(0, cut);
  const [view = "", id = null] = path.split("/").filter(Boolean);
  return { view, id, params: new URLSearchParams(cut < 0 ? "" : text.slice(cut + 1)) };
}

export function format({ view = "", id = null, params = new URLSearchParams() }) {
  const query = new URLSearchParams([...params].filter(([, v]) => v !== ""));
  const path = [view, id].filter((p) => p !== null && p !== "").join("/");
  const text = query.toString();
  return `#/${path}${text ? `?${text}` : ""}`;
}

/** ``route`` with ``changes`` to its parameters (null removes one). */
export function withParams(route, changes) {
  const params = new URLSearchParams(route.params);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined) params.delete(key);
    else params.set(key, value);
  }
  return { ...route, params };
}

let render = async () => {};
let saving = null;
const SAVE_AFTER_MS = 200;  // after scrolling stops: browsers limit how often state is set

function remember(extra = {}) {
  clearTimeout(saving);
  history.replaceState({ ...history.state, scroll: scrollY, ...extra }, "");
}

/** Show ``route``: a new entry in the history (``replace``: in place of this one). An
 * entry that opens an image over the view it was on knows it, so that closing is Back. */
export function go(route, { replace = false } = {}) {
  const depth = history.state?.depth ?? 0;
  const bare = (r) => format(withParams(r, { open: null }));
  remember();
  if (replace) {
    history.replaceState({ depth, opened: history.state?.opened }, "", format(route));
  } else {
    const opened = route.params.has("open") && bare(route) === bare(parse());
    history.pushState({ depth: depth + 1, opened }, "", format(route));
  }
  return render(parse(), history.state);
}

/** Back to where the page came from, or to ``fallback`` when it was opened here. */
export function back(fallback) {
  if ((history.state?.depth ?? 0) > 0) history.back();
  else go(fallback, { replace: true });
}

export function start(show) {
  render = show;
  history.scrollRestoration = "manual";  // each entry's place is kept in its state
  addEventListener("popstate", () => render(parse(), history.state || {}));
  addEventListener("scroll", () => {
    clearTimeout(saving);
    saving = setTimeout(remember, SAVE_AFTER_MS);
  }, { passive: true });
  // Links to "#/..." go through go(), so that the place left is remembered first; a click
  // with a modifier (a new tab, a new window) is the browser's.
  document.addEventListener("click", (e) => {
    const link = e.target.closest("a[href^='#/']");
    if (!link || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey
        || e.shiftKey || e.altKey) return;
    e.preventDefault();
    go(parse(link.getAttribute("href")));
  });
  if (!history.state) history.replaceState({ depth: 0 }, "");
  return render(parse(), history.state);
}
