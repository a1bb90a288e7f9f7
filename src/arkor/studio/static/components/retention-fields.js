// <retention-fields>: how long a deployment keeps its chat runs (runRetentionMode/Days).
import { h, replace } from "../dom.js";

const MODES = [
  ["default", "Server default (7 days)"], ["days", "Keep for a number of days"],
  ["unlimited", "Keep forever"], ["disabled", "Don't keep runs"],
];

class RetentionFields extends HTMLElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    const uid = Math.random().toString(36).slice(2, 8);
    const withDefault = this.hasAttribute("allow-default");
    this.mode = h("select", { id: `ret-${uid}`, onchange: () => this.sync() },
      MODES.filter(([v]) => withDefault || v !== "default").map(([v, l]) => h("option", { value: v }, l)));
    this.days = h("input", { id: `retd-${uid}`, type: "number", min: "1", max: "3650", value: "7" });
    this.daysRow = h("div", { class: "field" }, h("label", { for: this.days.id }, "Days"), this.days);
    replace(this, h("div", { class: "grid-2" },
      h("div", { class: "field" }, h("label", { for: this.mode.id }, "Run retention"), this.mode), this.daysRow));
    if (this.wanted) this.value = this.wanted;
    this.sync();
  }

  sync() { this.daysRow.hidden = this.mode.value !== "days"; }

  // {} for the server default, else the fields to send; null when the days are invalid.
  get value() {
    const mode = this.mode.value;
    if (mode === "default") return {};
    if (mode !== "days") return { runRetentionMode: mode };
    const days = Number(this.days.value);
    return Number.isInteger(days) && days >= 1 ? { runRetentionMode: "days", runRetentionDays: days } : null;
  }

  set value({ runRetentionMode, runRetentionDays }) {
    if (!this.built) { this.wanted = { runRetentionMode, runRetentionDays }; return; }
    this.mode.value = [...this.mode.options].some((o) => o.value === runRetentionMode) ? runRetentionMode : this.mode.options[0].value;
    if (runRetentionDays) this.days.value = String(runRetentionDays);
    this.sync();
  }
}

customElements.define("retention-fields", RetentionFields);
