// The app's entry: asks for a key when the server wants one, then shows the view the URL's
// fragment names (#playground, the default, or #sessions).

import { ApiError, getJson, saveKey, savedKey } from "./api.js";
import * as sessions from "./console.js";
import { byId } from "./dom.js";
import * as playground from "./playground.js";

const VIEWS = { playground: "playground-view", sessions: "sessions-view" };
let current = null;

// Whether the server lets this tab in: 401 means a key is needed (or the one given is wrong).
async function admitted() {
  try {
    await getJson("/v1/sessions");
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return false;
    throw error;
  }
}

function show(name, moved = false) {
  const changed = current !== name;
  current = name;
  byId("loading").hidden = true;
  byId("key-view").hidden = true;
  for (const [view, id] of Object.entries(VIEWS)) {
    byId(id).hidden = view !== name;
    const link = byId(`nav-${view}`);
    if (view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  byId("forget-key").hidden = !savedKey();
  sessions.visible(name === "sessions");
  if (name === "playground") playground.refreshFiles();
  if (!changed) return;
  document.title = name === "sessions" ? "Sessions · lci" : "Playground · lci";
  // A view switched by a link: start reading (and tabbing) at its content.
  if (moved) byId("main").focus({ preventScroll: true });
}

function route(event) {
  if (!byId("key-view").hidden || !byId("loading").hidden) return; // not let in yet
  const wanted = location.hash.slice(1);
  if (Object.hasOwn(VIEWS, wanted)) show(wanted, event?.type === "hashchange");
  else if (!current) show("playground");
}

function askForKey(message) {
  byId("loading").hidden = true;
  for (const id of Object.values(VIEWS)) byId(id).hidden = true;
  sessions.visible(false);
  current = null;
  byId("key-view").hidden = false;
  const error = byId("key-error");
  error.hidden = !message;
  error.textContent = message || "";
  byId("key-input").focus();
}

async function start() {
  playground.setUp();
  sessions.setUp();
  byId("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = byId("key-input");
    saveKey(input.value.trim());
    if (await admitted()) {
      input.value = "";
      byId("key-view").hidden = true;
      route();
      byId("main").focus({ preventScroll: true }); // the prompt is gone: go on at the content
    } else {
      saveKey("");
      askForKey("The server refused that key.");
    }
  });
  byId("forget-key").addEventListener("click", () => {
    saveKey("");
    byId("forget-key").hidden = true;
    askForKey("");
  });
  window.addEventListener("hashchange", route);
  try {
    if (await admitted()) {
      byId("loading").hidden = true;
      route();
    } else {
      const hadKey = Boolean(savedKey());
      saveKey("");
      askForKey(hadKey ? "The server refused the saved key." : "");
    }
  } catch (error) {
    byId("loading").textContent = `The server did not answer: ${error.message}`;
  }
}

start();
