// The server's JSON API, with the page's token (?token=...) and errors a person can read.
const token = new URLSearchParams(location.search).get("token");

export function url(path) {  // <img> tags cannot send headers: the token goes in the query
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

export const thumbnail = (id) => url(`/api/items/${id}/thumbnail`);
export const preview = (id) => url(`/api/items/${id}/preview`);
export const original = (id) => url(`/api/items/${id}/image`);

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(url(path), options);
  } catch {
    throw new ApiError("No answer from the server: is `retrieve serve` still running?", 0);
  }
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: said below */ }
  if (!response.ok || body === null) {
    throw new ApiError((body && body.error) || `The server answered ${response.status} `
                       + `${response.statusText}`, response.status);
  }
  return body;
}

export function megabytes(bytes) {
  return `${(bytes / 2 ** 20).toLocaleString(undefined, { maximumFractionDigits: 1 })} MB`;
}
