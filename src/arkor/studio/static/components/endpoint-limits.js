// <endpoint-limits deployment-id="…">: the "Rate limits" card of an endpoint (requests and tokens per
// minute, concurrent requests; blank is unlimited), read from and saved to
// /api/deployments/<id> as `limits`. The control plane judges the ranges; per-key limits are
// set with `arkor endpoints limits SLUG --key KEY_ID`.
import { api } from "../api.js";
import { card, errorBox, h, replace } from "../dom.js";

const FIELDS = [
  ["requestsPerMinute", "Requests per minute"],
  ["tokensPerMinute", "Tokens per minute"],
  ["concurrentRequests", "Concurrent requests"],
];

class EndpointLimits extends HTMLElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    const uid = Math.random().toString(36).slice(2, 8);
    this.inputs = Object.fromEntries(FIELDS.map(([name]) => [name, h("input", {
      id: `lim-${name}-${uid}`, type: "number", min: "1", step: "1", inputmode: "numeric",
      placeholder: "Unlimited", oninput: () => replace(this.status) })]));
    this.status = h("div", { role: "status" });
    this.saveButton = h("button", { type: "button", class: "button", onclick: () => this.save() }, "Save limits");
    replace(this, card("Rate limits", h("div", { class: "stack" },
      h("div", { class: "grid-3" }, FIELDS.map(([name, label]) =>
        h("div", { class: "field" }, h("label", { for: this.inputs[name].id }, label), this.inputs[name]))),
      h("p", { class: "hint" }, "Blank is unlimited. A call over a limit gets 429 with Retry-After; "
        + "tokens count the prompt and the answer. Each API key can have its own limits too: ",
      h("code", {}, "arkor endpoints limits SLUG --key KEY_ID"), "."),
      h("div", { class: "row" }, this.saveButton), this.status)));
    this.load();
  }

  get base() { return `/api/deployments/${encodeURIComponent(this.getAttribute("deployment-id") ?? "")}`; }

  show(limits) {
    for (const [name] of FIELDS) this.inputs[name].value = limits?.[name] ?? "";
  }

  async load() {
    try {
      this.show((await api.get(this.base)).deployment.limits);
    } catch (err) {
      replace(this.status, errorBox(err.message));
    }
  }

  // The limits to send ({name: n | null}), or null after showing which field is wrong.
  read() {
    const limits = {};
    for (const [name, label] of FIELDS) {
      const text = this.inputs[name].value.trim();
      const value = Number(text);
      if (text && !(Number.isInteger(value) && value >= 1)) {
        replace(this.status, errorBox(`${label} must be a whole number of at least 1, or blank for unlimited.`));
        this.inputs[name].focus();
        return null;
      }
      limits[name] = text ? value : null;
    }
    return limits;
  }

  async save() {
    const limits = this.read();
    if (!limits) return;
    this.saveButton.disabled = true;
    try {
      this.show((await api.patch(this.base, { limits })).deployment.limits);
      replace(this.status, h("p", { class: "hint" }, "Saved. The edge applies them from the next call."));
    } catch (err) {
      replace(this.status, errorBox(err.message));
    } finally {
      this.saveButton.disabled = false;
    }
  }
}

customElements.define("endpoint-limits", EndpointLimits);
