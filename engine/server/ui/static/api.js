// The server's public APIs, called with the key the user typed in (kept in this tab's
// sessionStorage only). Every request goes to this page's own origin.

const KEY_NAME = "lci.key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function savedKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function saveKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

function headers(extra = {}) {
  const key = savedKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const error = body.error ?? body.detail ?? body;
    message = typeof error === "string" ? error : error.message ?? JSON.stringify(error);
  } catch {
    // not JSON: the status line says it
  }
  return new ApiError(response.status, message);
}

export async function request(method, path, { json, form, signal } = {}) {
  const init = { method, headers: headers(), signal, credentials: "omit" };
  if (json !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response;
}

export async function getJson(path, options) {
  return (await request("GET", path, options)).json();
}

export async function sendJson(method, path, json, options = {}) {
  return (await request(method, path, { ...options, json })).json();
}

// POST a JSON body and call `onEvent(name, data)` for each server-sent event of the answer
// (`event:` lines name it; without one the name is "message"). Comments (keep-alives) are skipped.
export async function stream(path, json, onEvent, signal) {
  const response = await request("POST", path, { json, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatch(block, onEvent);
    }
  }
  if (buffer.trim()) dispatch(buffer, onEvent);
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  const text = data.join("\n");
  if (text === "[DONE]") return;
  onEvent(name, JSON.parse(text));
}

// Save a file the API serves (fetched with the key, so a plain link would not do).
export async function download(path, filename) {
  const blob = await (await request("GET", path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
