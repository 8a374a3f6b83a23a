// The playground: a chat with the server's model through its own Responses API
// (POST /v1/responses, streamed, with the code interpreter), and the container's files through
// the Containers files API.

import { ApiError, download, getJson, request, sendJson, stream } from "./api.js";
import { byId, bytes, el, fileList, looksFailed } from "./dom.js";

const state = {
  previous: null, // the last response's id: the next question continues it
  container: null, // the container's id, once a cell ran or a file was uploaded
  running: null, // the AbortController of the answer being streamed
  cells: 0,
};

function status(text) {
  byId("chat-status").textContent = text;
}

// One answer: its items as the stream adds them, keyed by item id.
class Answer {
  constructor(question) {
    this.items = new Map();
    this.body = el("div", { class: "assistant" });
    this.turn = el(
      "article",
      { class: "turn", "aria-label": "Exchange" },
      el("div", { class: "user" }, el("span", { class: "who", text: "You" }), el("p", { text: question })),
      el("div", { class: "who", text: "Assistant" }),
      this.body,
    );
    byId("conversation").append(this.turn);
    this.turn.scrollIntoView({ block: "end" });
  }

  added(item) {
    if (item.type === "reasoning") {
      const text = el("p", { class: "reasoning-text" });
      const node = el("details", { class: "reasoning" }, el("summary", { text: "Reasoning" }), text);
      this.items.set(item.id, { node, text });
      this.body.append(node);
    } else if (item.type === "message") {
      const text = el("div", { class: "answer" });
      this.items.set(item.id, { node: text, text });
      this.body.append(text);
    } else if (item.type === "code_interpreter_call") {
      state.cells += 1;
      const badge = el("span", { class: "badge", text: "writing" });
      const code = el("code");
      const outputs = el("div", { class: "outputs" });
      const node = el(
        "section",
        { class: "cell", "aria-label": `Code cell ${state.cells}` },
        el("div", { class: "cell-head" }, el("span", { text: `Code cell ${state.cells}` }), badge),
        el("pre", { class: "code" }, code),
        outputs,
      );
      this.items.set(item.id, { node, code, badge, outputs });
      this.body.append(node);
      if (item.container_id && item.container_id !== state.container) {
        state.container = item.container_id;
        refreshFiles();
      }
    }
    this.turn.scrollIntoView({ block: "end" });
  }

  append(id, delta) {
    const item = this.items.get(id);
    if (item) (item.text ?? item.code).append(delta);
  }

  interpreting(id) {
    const item = this.items.get(id);
    if (!item) return;
    item.badge.textContent = "running";
    item.node.classList.add("running");
    status(`Running code cell…`);
  }

  done(item) {
    const shown = this.items.get(item.id);
    if (!shown || item.type !== "code_interpreter_call") return;
    shown.node.classList.remove("running");
    shown.code.textContent = item.code ?? shown.code.textContent;
    const outputs = item.outputs ?? [];
    let failed = item.status !== "completed";
    for (const output of outputs) {
      if (output.type === "image") {
        shown.outputs.append(el("img", { src: output.url, alt: "Figure drawn by the code" }));
      } else if (output.type === "logs" && output.logs) {
        failed = failed || looksFailed(output.logs);
        shown.outputs.append(el("pre", { class: "logs" }, output.logs));
      }
    }
    shown.badge.textContent = failed ? "error" : "done";
    shown.node.classList.toggle("failed", failed);
  }

  usage(response) {
    const usage = response.usage;
    if (!usage) return;
    const reasoning = usage.output_tokens_details?.reasoning_tokens ?? 0;
    const runs = usage.x_tools?.code_interpreter?.count ?? 0;
    const text =
      `Tokens: ${usage.input_tokens} in, ${usage.output_tokens} out` +
      (reasoning ? ` (${reasoning} reasoning)` : "") +
      `, ${usage.total_tokens} total · code runs: ${runs}`;
    this.body.append(el("p", { class: "usage", text }));
  }

  failed(message) {
    this.body.append(el("p", { class: "error", role: "alert", text: message }));
  }
}

function handle(answer, name, data) {
  switch (name) {
    case "response.created":
      answer.id = data.response.id;
      break;
    case "response.output_item.added":
      answer.added(data.item);
      break;
    case "response.reasoning_summary_text.delta":
    case "response.output_text.delta":
    case "response.code_interpreter_call_code.delta":
      answer.append(data.item_id, data.delta);
      break;
    case "response.code_interpreter_call.interpreting":
      answer.interpreting(data.item_id);
      break;
    case "response.output_item.done":
      answer.done(data.item);
      break;
    case "response.completed":
    case "response.incomplete":
      state.previous = data.response.id;
      answer.usage(data.response);
      break;
    case "response.failed":
      answer.usage(data.response);
      answer.failed(data.response.error?.message ?? "the answer failed");
      break;
    case "error":
      answer.failed(data.message ?? data.error?.message ?? "the server reported an error");
      break;
    default:
      break;
  }
}

function requestBody(question) {
  // A container made for an upload before the first answer is named; after that the previous
  // response carries the conversation on, container and all.
  const named = state.container && !state.previous;
  const body = {
    input: question,
    tools: [{ type: "code_interpreter", container: named ? state.container : { type: "auto" } }],
    include: ["code_interpreter_call.outputs"],
    stream: true,
  };
  const model = byId("model").value.trim();
  if (model) body.model = model;
  if (state.previous) body.previous_response_id = state.previous;
  return body;
}

async function ask(question) {
  const answer = new Answer(question);
  const controller = new AbortController();
  state.running = controller;
  busy(true);
  status("Waiting for the model…");
  try {
    await stream("/v1/responses", requestBody(question), (n, d) => handle(answer, n, d), controller.signal);
    status("Answer complete.");
  } catch (error) {
    if (error.name === "AbortError") {
      answer.failed("Stopped.");
      status("Stopped.");
    } else {
      answer.failed(error.message);
      status("The answer failed.");
    }
  } finally {
    state.running = null;
    busy(false);
    refreshFiles();
  }
}

function busy(on) {
  byId("conversation").setAttribute("aria-busy", on ? "true" : "false");
  byId("send").disabled = on;
  byId("stop").hidden = !on;
}

export async function refreshFiles() {
  const list = byId("files");
  const note = byId("container-note");
  if (!state.container) {
    list.replaceChildren();
    note.hidden = false;
    return;
  }
  note.hidden = true;
  try {
    const page = await getJson(`/v1/containers/${state.container}/files?limit=100&order=asc`);
    const files = page.data.map((f) => ({ ...f, size: f.bytes, path: f.path.split("/").pop() }));
    fileList(list, files, {
      label: "No files yet.",
      onDownload: (f) => download(`/v1/containers/${state.container}/files/${f.id}/content`, f.path),
    });
  } catch (error) {
    list.replaceChildren(el("li", { class: "error", text: `Files: ${error.message}` }));
  }
}

async function upload(event) {
  event.preventDefault();
  const input = byId("upload");
  const file = input.files[0];
  if (!file) {
    status("Choose a file to upload first.");
    input.focus();
    return;
  }
  try {
    if (!state.container) {
      const made = await sendJson("POST", "/v1/containers", { name: "playground" });
      state.container = made.id;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    await request("POST", `/v1/containers/${state.container}/files`, { form });
    status(`Uploaded ${file.name} (${bytes(file.size)}).`);
    input.value = "";
  } catch (error) {
    status(`Upload failed: ${error instanceof ApiError ? error.message : error}`);
  }
  refreshFiles();
}

function reset() {
  state.running?.abort();
  state.previous = null;
  state.container = null;
  state.cells = 0;
  byId("conversation").replaceChildren();
  status("New conversation.");
  refreshFiles();
  byId("question").focus();
}

export function setUp() {
  const form = byId("ask-form");
  const question = byId("question");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text || state.running) return;
    question.value = "";
    ask(text);
  });
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  byId("stop").addEventListener("click", () => state.running?.abort());
  byId("new-chat").addEventListener("click", reset);
  byId("upload-form").addEventListener("submit", upload);
  byId("refresh-files").addEventListener("click", refreshFiles);
}
