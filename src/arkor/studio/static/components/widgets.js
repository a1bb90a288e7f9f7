// Small widgets: <copy-button>, <status-badge>.
import { h, replace } from "../dom.js";

class CopyButton extends HTMLElement {
  connectedCallback() {
    const label = this.getAttribute("label") || "Copy";
    this.button = h("button", { type: "button", class: "button small", onclick: () => this.copy() }, label);
    this.button.setAttribute("aria-label", this.getAttribute("aria-label") || label);
    replace(this, this.button);
  }

  get text() { return this._text ?? this.getAttribute("text") ?? ""; }
  set text(value) { this._text = value; }

  async copy() {
    const label = this.getAttribute("label") || "Copy";
    try {
      await navigator.clipboard.writeText(this.text);
      this.button.textContent = "Copied";
    } catch {
      // Clipboard access needs a secure context or permission; select the text instead.
      this.button.textContent = "Press Ctrl+C";
      const target = this.getAttribute("for") && document.getElementById(this.getAttribute("for"));
      if (target) window.getSelection().selectAllChildren(target);
    }
    setTimeout(() => { this.button.textContent = label; }, 1500);
  }
}

const STATUS_TONE = {
  running: "info", queued: "neutral", completed: "ok", failed: "bad", cancelled: "warn",
  enabled: "ok", disabled: "neutral", revoked: "neutral",
  verified: "ok", pending: "warn",
};

class StatusBadge extends HTMLElement {
  static observedAttributes = ["status"];
  connectedCallback() { this.render(); }
  attributeChangedCallback() { this.render(); }
  render() {
    const status = this.getAttribute("status") || "";
    this.className = `badge ${STATUS_TONE[status] || "neutral"}`;
    this.textContent = status;
  }
}

customElements.define("copy-button", CopyButton);
customElements.define("status-badge", StatusBadge);

export function copyButton(text, label = "Copy", ariaLabel) {
  const el = h("copy-button", { label, "aria-label": ariaLabel || label });
  el.text = text;
  return el;
}

export function statusBadge(status) {
  return h("status-badge", { status });
}
