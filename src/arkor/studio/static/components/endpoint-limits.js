// Rate limits (requests and tokens per minute, concurrent requests; blank is unlimited). The
// control plane judges the ranges; a value that is not a whole number of at least 1 is refused
// here first.
// <endpoint-limits deployment-id="…">: the endpoint's "Rate limits" card, read from and saved
// to /api/deployments/<id> as `limits`.
// <key-limits deployment-id="…"> with .apiKey (a key of the endpoint, as listed): that key's
// limits in its row of the API keys list, a summary with an edit button (an enabled key), saved
// to /api/deployments/<id>/keys/<keyId> as `limits`; the key object takes the saved limits.
import { api } from "../api.js";
import { card, errorBox, h, replace } from "../dom.js";

const FIELDS = [
  ["requestsPerMinute", "Requests per minute", "Requests/min", "requests/min"],
  ["tokensPerMinute", "Tokens per minute", "Tokens/min", "tokens/min"],
  ["concurrentRequests", "Concurrent requests", "Concurrent", "at once"],
];

function limitInputs(prefix, clear) {
  const uid = Math.random().toString(36).slice(2, 8);
  return Object.fromEntries(FIELDS.map(([name]) => [name, h("input", {
    id: `${prefix}-${name}-${uid}`, type: "number", min: "1", step: "1", inputmode: "numeric",
    placeholder: "Unlimited", oninput: clear })]));
}

function showLimits(inputs, limits) {
  for (const [name] of FIELDS) inputs[name].value = limits?.[name] ?? "";
}

// The limits to send ({name: n | null}), or null after showing in `status` which field is wrong.
function readLimits(inputs, status) {
  const limits = {};
  for (const [name, label] of FIELDS) {
    const text = inputs[name].value.trim();
    const value = Number(text);
    if (text && !(Number.isInteger(value) && value >= 1)) {
      replace(status, errorBox(`${label} must be a whole number of at least 1, or blank for unlimited.`));
      inputs[name].focus();
      return null;
    }
    limits[name] = text ? value : null;
  }
  return limits;
}

export function limitsSummary(limits) {
  const set = FIELDS.filter(([name]) => limits?.[name] != null)
    .map(([name, , , unit]) => `${Number(limits[name]).toLocaleString()} ${unit}`);
  return set.length ? set.join(" · ") : "no limits";
}

class EndpointLimits extends HTMLElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    this.inputs = limitInputs("lim", () => replace(this.status));
    this.status = h("div", { role: "status" });
    this.saveButton = h("button", { type: "button", class: "button", onclick: () => this.save() }, "Save limits");
    replace(this, card("Rate limits", h("div", { class: "stack" },
      h("div", { class: "grid-3" }, FIELDS.map(([name, label]) =>
        h("div", { class: "field" }, h("label", { for: this.inputs[name].id }, label), this.inputs[name]))),
      h("p", { class: "hint" }, "Blank is unlimited. A call over a limit gets 429 with Retry-After; "
        + "tokens count the prompt and the answer. Each API key can have its own limits too "
        + "(Edit, under the key in the API keys list); a call must be within both."),
      h("div", { class: "row" }, this.saveButton), this.status)));
    this.load();
  }

  get base() { return `/api/deployments/${encodeURIComponent(this.getAttribute("deployment-id") ?? "")}`; }

  async load() {
    try {
      showLimits(this.inputs, (await api.get(this.base)).deployment.limits);
    } catch (err) {
      replace(this.status, errorBox(err.message));
    }
  }

  async save() {
    const limits = readLimits(this.inputs, this.status);
    if (!limits) return;
    this.saveButton.disabled = true;
    try {
      showLimits(this.inputs, (await api.patch(this.base, { limits })).deployment.limits);
      replace(this.status, h("p", { class: "hint" }, "Saved. The edge applies them from the next call."));
    } catch (err) {
      replace(this.status, errorBox(err.message));
    } finally {
      this.saveButton.disabled = false;
    }
  }
}

class KeyLimits extends HTMLElement {
  get apiKey() { return this.key; }

  set apiKey(key) {
    this.key = key;
    if (this.isConnected) this.render();
  }

  connectedCallback() { this.render(); }

  get url() {
    const deployment = encodeURIComponent(this.getAttribute("deployment-id") ?? "");
    return `/api/deployments/${deployment}/keys/${encodeURIComponent(this.key.id)}`;
  }

  render(note = null) {
    if (!this.key) return;
    this.toggleAttribute("editing", Boolean(this.inputs));
    if (!this.inputs) {
      replace(this, h("span", { class: "muted" }, "Rate limits: ", h("span", { class: "key-limits-summary" },
        limitsSummary(this.key.limits))),
      this.key.enabled ? h("button", { type: "button", class: "button small",
        "aria-label": `Limits of key ${this.key.label}`, onclick: () => this.edit() }, "Edit") : null,
      note);
      return;
    }
    const status = h("div", { role: "status" });
    const save = h("button", { type: "button", class: "button small primary",
      onclick: () => this.save(save, status) }, "Save key limits");
    replace(this, h("div", { class: "stack" },
      h("div", { class: "grid-3" }, FIELDS.map(([name, , short]) => h("div", { class: "field" },
        h("label", { for: this.inputs[name].id }, short), this.inputs[name]))),
      h("div", { class: "row" }, save,
        h("button", { type: "button", class: "button small ghost", onclick: () => { this.inputs = null; this.render(); } }, "Cancel")),
      status));
  }

  edit() {
    this.inputs = limitInputs("key-lim", () => {});
    showLimits(this.inputs, this.key.limits);
    this.render();
    this.inputs.requestsPerMinute.focus();
  }

  async save(button, status) {
    const limits = readLimits(this.inputs, status);
    if (!limits) return;
    button.disabled = true;
    try {
      this.key.limits = (await api.patch(this.url, { limits })).key.limits;
      this.inputs = null;
      this.render(h("span", { class: "hint", role: "status" }, "Saved."));
    } catch (err) {
      replace(status, errorBox(err.message));
      button.disabled = false;
    }
  }
}

customElements.define("endpoint-limits", EndpointLimits);
customElements.define("key-limits", KeyLimits);
