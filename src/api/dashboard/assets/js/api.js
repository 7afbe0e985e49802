// Every call the dashboard makes goes through here: same-origin fetches under the base path,
// the session's CSRF header on actions, and problem documents turned into errors that carry
// the API's (the CLI's) wording.

let csrf = null;

export function setCsrf(value) { csrf = value; }

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `the node answered ${status}`);
    this.status = status;
    this.code = problem?.code;
  }
}

// Called with a 401 anywhere: the page goes to sign-in.
let onUnauthorized = () => {};
export function whenUnauthorized(handler) { onUnauthorized = handler; }

export async function api(path, { method = "GET", body, raw, contentType } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && csrf) headers["X-Sluice-CSRF"] = csrf;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    headers["Content-Type"] = contentType || "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    // Relative to <base href>: the base path a reverse proxy serves the node under.
    response = await fetch(path.replace(/^\//, ""), { method, headers, body: payload, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, { detail: "the node cannot be reached; is it running?" });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  const data = text ? safeParse(text) : null;
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/v1/session")) onUnauthorized();
    throw new ApiError(response.status, data);
  }
  return data;
}

function safeParse(text) {
  try { return JSON.parse(text); } catch { return { detail: text }; }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}
