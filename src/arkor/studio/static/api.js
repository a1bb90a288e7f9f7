// The Studio API: every call carries this launch's token, read once from the page.
const token = document.querySelector('meta[name="arkor-studio-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export async function request(method, path, body, { signal, raw } = {}) {
  const headers = { "X-Arkor-Studio-Token": token };
  let payload;
  if (body instanceof Blob || typeof body === "string") {
    payload = body;
    headers["Content-Type"] = "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The Studio server is not answering. Is `arkor dev` still running?");
  }
  if (raw) return response;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : {}; } catch { data = null; }
  if (!response.ok) {
    const message = (data && typeof data.error === "string" && data.error) ||
      text.trim() || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, data);
  }
  return data ?? {};
}

export const api = {
  get: (path, opts) => request("GET", path, undefined, opts),
  post: (path, body, opts) => request("POST", path, body ?? {}, opts),
  patch: (path, body, opts) => request("PATCH", path, body, opts),
  del: (path, opts) => request("DELETE", path, undefined, opts),
};

export function eventsUrl(jobId) {
  return `/api/jobs/${encodeURIComponent(jobId)}/events?studioToken=${encodeURIComponent(token)}`;
}

// Polls fn every `ms` while the tab is visible; returns a stop function.
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (document.visibilityState === "visible") {
      try { await fn(); } catch { /* the page shows its own error */ }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  const onVisible = () => { if (document.visibilityState === "visible" && !stopped) { clearTimeout(timer); tick(); } };
  document.addEventListener("visibilitychange", onVisible);
  return () => { stopped = true; clearTimeout(timer); document.removeEventListener("visibilitychange", onVisible); };
}
