// Small DOM helpers shared by the views. Text is always set as text (never as HTML): what the model
// or the sandbox wrote cannot become markup.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function age(seconds) {
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

// A traceback or an exception line in a cell's logs: the cell is shown as failed.
const ERROR_PATTERN = /Traceback \(most recent call last\)|^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b/m;

export function looksFailed(text) {
  return ERROR_PATTERN.test(text || "");
}

// An image of a MIME bundle (PNG, JPEG, GIF, SVG as base64 or text) as an <img>, or null.
export function bundleImage(data, alt) {
  for (const mime of ["image/png", "image/jpeg", "image/gif"]) {
    if (data[mime]) return el("img", { src: `data:${mime};base64,${data[mime]}`, alt });
  }
  if (data["image/svg+xml"]) {
    // As an image (not inline markup): an SVG shown by <img> runs no script.
    const src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(data["image/svg+xml"])}`;
    return el("img", { src, alt });
  }
  return null;
}

export function fileList(list, files, { label, onDownload }) {
  list.replaceChildren(
    ...files.map((file) =>
      el(
        "li",
        {},
        el("span", { class: "path", text: file.path }),
        el("span", { class: "size", text: bytes(file.size) }),
        el("button", {
          type: "button",
          class: "quiet small",
          text: "Download",
          "aria-label": `Download ${file.path}`,
          onclick: () => onDownload(file),
        }),
      ),
    ),
  );
  if (!files.length) list.append(el("li", { class: "note", text: label }));
}
