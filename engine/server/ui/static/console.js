// The session console: the key's live sessions (GET /v1/sessions, each one's usage from
// GET /v1/sessions/{id}), and a small notebook over one of them (POST .../execute, streamed).

import { download, getJson, request, sendJson, stream } from "./api.js";
import { age, bundleImage, byId, bytes, el, fileList } from "./dom.js";

const REFRESH_MS = 5000;
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

const state = { open: null, timer: null, running: false, loading: false };

function status(text) {
  byId("sessions-status").textContent = text;
}

function limits(l) {
  const parts = [`${l.memory_mb} MiB`, `${l.timeout_s} s`];
  if (l.cpus) parts.push(`${l.cpus} CPU`);
  parts.push(l.network ? "network" : "offline");
  return parts.join(" · ");
}

function row(info) {
  const usage = info.usage ?? {};
  const short = info.id.length > 14 ? `${info.id.slice(0, 12)}…` : info.id;
  const cpu = usage.cpu_s === null || usage.cpu_s === undefined ? "–" : `${usage.cpu_s.toFixed(2)} s`;
  return el(
    "tr",
    { "data-session": info.id, class: info.id === state.open ? "current" : null },
    el("th", { scope: "row" }, el("code", { title: info.id, text: short })),
    el("td", { text: info.backend }),
    el("td", { text: info.state }),
    el("td", { text: limits(info.limits) }),
    el("td", { text: age(Date.now() / 1000 - info.created_at) }),
    el("td", { text: bytes(usage.memory_bytes) }),
    el("td", { text: cpu }),
    el("td", { text: String(info.executions) }),
    el(
      "td",
      { class: "actions" },
      el("button", {
        type: "button",
        class: "quiet small",
        text: "Open",
        "aria-label": `Open session ${info.id}`,
        onclick: () => openSession(info.id),
      }),
      el("button", {
        type: "button",
        class: "danger small",
        text: "Close",
        "aria-label": `Close session ${info.id}`,
        onclick: () => closeSession(info.id),
      }),
    ),
  );
}

export async function refreshSessions() {
  if (state.loading) return;
  state.loading = true;
  try {
    const { sessions } = await getJson("/v1/sessions");
    // Each one measured now: memory and CPU as they are, not as last seen.
    const measured = await Promise.all(
      sessions.map((s) => getJson(`/v1/sessions/${s.id}`).catch(() => s)),
    );
    const body = byId("sessions");
    body.replaceChildren(...measured.map(row));
    if (!measured.length) {
      body.append(el("tr", {}, el("td", { colspan: "9", class: "note", text: "No live sessions." })));
    }
    if (state.open && !measured.some((s) => s.id === state.open)) hideNotebook();
    status(`${measured.length} live session${measured.length === 1 ? "" : "s"}.`);
  } catch (error) {
    status(`Sessions: ${error.message}`);
  } finally {
    state.loading = false;
  }
}

function hideNotebook() {
  state.open = null;
  byId("notebook").hidden = true;
  byId("cells").replaceChildren();
}

function openSession(id) {
  if (state.open !== id) byId("cells").replaceChildren();
  state.open = id;
  byId("notebook").hidden = false;
  byId("notebook-title").textContent = `Session ${id}`;
  for (const tr of byId("sessions").querySelectorAll("tr")) {
    tr.classList.toggle("current", tr.dataset.session === id);
  }
  refreshSessionFiles();
  byId("cell-code").focus();
}

async function closeSession(id) {
  try {
    await request("DELETE", `/v1/sessions/${id}`);
    status(`Closed session ${id}.`);
  } catch (error) {
    status(`Close failed: ${error.message}`);
  }
  if (state.open === id) hideNotebook();
  await refreshSessions();
}

async function newSession() {
  try {
    const info = await sendJson("POST", "/v1/sessions", {});
    await refreshSessions();
    openSession(info.id);
  } catch (error) {
    status(`New session failed: ${error.message}`);
  }
}

function showOutput(cell, name, item) {
  if (name === "stdout" || name === "stderr") {
    let last = cell.outputs.lastElementChild;
    if (!last || !last.classList.contains(name)) {
      last = el("pre", { class: `logs ${name}` });
      cell.outputs.append(last);
    }
    last.append(item.text);
  } else if (name === "display" || name === "result") {
    const image = bundleImage(item.data, "Image shown by the cell");
    const text = item.data["text/plain"];
    if (image) cell.outputs.append(image);
    else if (text !== undefined) cell.outputs.append(el("pre", { class: `logs ${name}` }, text));
  } else if (name === "truncated") {
    cell.outputs.append(el("p", { class: "note", text: `[${bytes(item.omitted_bytes)} of output omitted]` }));
  }
}

function finish(cell, execution) {
  if (execution.error) {
    const text = execution.error.traceback.replace(ANSI, "") || `${execution.error.name}: ${execution.error.value}`;
    cell.outputs.append(el("pre", { class: "logs traceback" }, text));
  }
  const ok = execution.outcome === "completed";
  cell.node.classList.toggle("failed", !ok);
  cell.badge.textContent = `${execution.outcome} · ${Math.round(execution.duration_ms)} ms`;
  cell.label.textContent = `In [${execution.execution_count}]`;
}

async function runCell(event) {
  event.preventDefault();
  const code = byId("cell-code").value;
  if (!state.open || !code.trim() || state.running) return;
  const badge = el("span", { class: "badge", text: "running" });
  const label = el("span", { text: "In [ ]" });
  const outputs = el("div", { class: "outputs" });
  const node = el(
    "section",
    { class: "cell running", "aria-label": "Cell" },
    el("div", { class: "cell-head" }, label, badge),
    el("pre", { class: "code" }, el("code", { text: code })),
    outputs,
  );
  const cell = { node, badge, label, outputs };
  byId("cells").append(node);
  state.running = true;
  byId("run-cell").disabled = true;
  try {
    await stream(`/v1/sessions/${state.open}/execute`, { code, stream: true }, (name, data) => {
      if (name === "execution") finish(cell, data);
      else if (name === "error") throw new Error(data.error?.message ?? "the execution failed");
      else showOutput(cell, name, data);
    });
  } catch (error) {
    node.classList.add("failed");
    badge.textContent = "failed";
    outputs.append(el("p", { class: "error", role: "alert", text: error.message }));
  } finally {
    node.classList.remove("running");
    state.running = false;
    byId("run-cell").disabled = false;
    refreshSessionFiles();
  }
}

async function refreshSessionFiles() {
  const id = state.open;
  if (!id) return;
  const list = byId("session-files");
  try {
    const { files } = await getJson(`/v1/sessions/${id}/files`);
    const path = (p) => p.split("/").map(encodeURIComponent).join("/");
    fileList(list, files, {
      label: "No files.",
      onDownload: (f) => download(`/v1/sessions/${id}/files/${path(f.path)}`, f.path.split("/").pop()),
    });
  } catch (error) {
    list.replaceChildren(el("li", { class: "error", text: `Files: ${error.message}` }));
  }
}

async function uploadToSession(event) {
  event.preventDefault();
  const input = byId("session-upload");
  const file = input.files[0];
  if (!state.open || !file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    await request("POST", `/v1/sessions/${state.open}/files`, { form });
    status(`Uploaded ${file.name}.`);
    input.value = "";
  } catch (error) {
    status(`Upload failed: ${error.message}`);
  }
  refreshSessionFiles();
}

// Called when the view is shown or hidden: the list refreshes itself only while it is seen.
export function visible(shown) {
  clearInterval(state.timer);
  state.timer = null;
  if (!shown) return;
  refreshSessions();
  state.timer = setInterval(refreshSessions, REFRESH_MS);
}

export function setUp() {
  byId("refresh-sessions").addEventListener("click", refreshSessions);
  byId("new-session").addEventListener("click", newSession);
  byId("cell-form").addEventListener("submit", runCell);
  byId("cell-code").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      byId("cell-form").requestSubmit();
    }
  });
  byId("close-session").addEventListener("click", () => state.open && closeSession(state.open));
  byId("session-upload-form").addEventListener("submit", uploadToSession);
  byId("refresh-session-files").addEventListener("click", refreshSessionFiles);
}
