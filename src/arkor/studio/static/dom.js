// A small element builder: h("a", { href, class: "x", onclick }, "text", child, ...).
// Strings become text nodes, so nothing user-supplied is ever parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function replace(el, ...children) {
  shown.delete(el);
  el.replaceChildren();
  append(el, children);
  return el;
}

// The markup each region last got from refresh(), as built (before custom elements render).
const shown = new WeakMap();

// Like replace(), for a region a page redraws on every poll or event: when the new children
// make the same markup as last time, the region keeps the nodes it has. A link or button is
// then not swapped under the pointer, so a click landing during a redraw is not lost. Event
// listeners and properties are not markup: use it where the new ones would do the same.
export function refresh(el, ...children) {
  const fresh = document.createElement("div");
  append(fresh, children);
  const markup = fresh.innerHTML;
  if (shown.get(el) === markup) return el;
  el.replaceChildren(...fresh.childNodes);
  shown.set(el, markup);
  return el;
}

export function card(title, ...children) {
  return h("section", { class: "card" },
    title ? h("h2", { class: "card-title" }, title) : null, ...children);
}

export function emptyState(title, text, ...actions) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title),
    text ? h("p", { class: "muted" }, text) : null, ...actions);
}

export function errorBox(message) {
  return h("div", { class: "error-box", role: "alert" }, message);
}

export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("p", { class: "hint" }, hint) : null);
}
