// <endpoint-usage>: the endpoint page's Usage tab: requests and tokens over time (<usage-chart>,
// hourly over the last 24 hours or daily over the last 30 days, the hours or days without
// calls drawn as zeros), the totals, and the requests and tokens of each key. Refreshed every
// 10 s while shown (start() / stop()); display(report, keys, granularity) draws given data.
import { api, poll } from "../api.js";
import { emptyState, errorBox, h, replace } from "../dom.js";
import { milliseconds } from "./run-list.js";
import { statusBadge } from "./widgets.js";
import { USAGE_GRANULARITY } from "../contract.js";

const REFRESH_MS = 10000;
const HOUR_MS = 3600000;
const DAY_MS = 24 * HOUR_MS;
const WINDOWS = {
  [USAGE_GRANULARITY.HOUR]: { step: HOUR_MS, count: 24, label: "Last 24 hours", by: "hourly", each: "hour", tickEvery: 4 },
  [USAGE_GRANULARITY.DAY]: { step: DAY_MS, count: 30, label: "Last 30 days", by: "daily", each: "day", tickEvery: 5 },
};
const NS = "http://www.w3.org/2000/svg";
const W = 640, H = 292, PAD = { left: 52, right: 16 }, PANEL_H = 96, PANELS = [16, 150];

// The bucket starts (UTC hours or days, as the control plane cuts them) ending with the current
// one, and the from/to that asks for exactly those.
export function usageWindow(granularity, now = Date.now()) {
  const { step, count } = WINDOWS[granularity];
  const last = Math.floor(now / step) * step;
  const starts = Array.from({ length: count }, (_, i) => last - (count - 1 - i) * step);
  return { starts, from: new Date(starts[0]).toISOString(), to: new Date(now).toISOString() };
}

// One point per start; the control plane leaves out buckets without calls.
export function fillBuckets(buckets, starts) {
  const byStart = new Map(buckets.map((b) => [Date.parse(b.start), b]));
  return starts.map((start) => {
    const b = byStart.get(start);
    return { start, requests: b?.requests ?? 0, promptTokens: b?.promptTokens ?? 0, completionTokens: b?.completionTokens ?? 0 };
  });
}

export function compact(n) {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${+(n / 1e3).toFixed(1)}k`;
  return n.toLocaleString("en-US");
}

// 2, 4 or 10 times a power of ten: an even top whose half is a whole number too.
function niceTop(value) {
  let scale = 1;
  while (true) {
    for (const top of [2, 4, 10]) if (value <= top * scale) return top * scale;
    scale *= 10;
  }
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function when(start, granularity) {
  const d = new Date(start);
  return granularity === USAGE_GRANULARITY.DAY ? d.toISOString().slice(0, 10) : `${d.toLocaleDateString()} ${d.toTimeString().slice(0, 5)}`;
}

class UsageChart extends HTMLElement {
  connectedCallback() { this.render(); }

  show(points, granularity) {
    this.points = points;
    this.granularity = granularity;
    this.render();
  }

  render() {
    const points = this.points;
    if (!points) { replace(this, h("div", { class: "chart-empty" }, "Loading usage…")); return; }
    const span = WINDOWS[this.granularity];
    const requests = points.reduce((sum, p) => sum + p.requests, 0);
    this.dataset.points = points.length;
    this.dataset.requests = requests;
    const sx = (i) => PAD.left + (points.length > 1 ? i / (points.length - 1) : 0.5) * (W - PAD.left - PAD.right);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart usage" });
    root.append(svg("title", {}, `Requests and tokens per ${span.each}, ${span.label.toLowerCase()}: ${requests} requests`));
    const panels = [
      ["requests", [["requests", "requests", "requests"]]],
      ["tokens", [["prompt", "promptTokens", "prompt tokens"], ["completion", "completionTokens", "completion tokens"]]],
    ];
    panels.forEach(([name, series], index) => {
      const top = PANELS[index];
      const max = niceTop(Math.max(1, ...series.flatMap(([, field]) => points.map((p) => p[field]))));
      const sy = (v) => top + PANEL_H - (v / max) * PANEL_H;
      for (const v of [0, max / 2, max]) {
        root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(v), y2: sy(v), class: "grid" }));
        root.append(svg("text", { x: PAD.left - 8, y: sy(v) + 4, "text-anchor": "end", class: "tick" }, compact(v)));
      }
      root.append(svg("text", { x: PAD.left, y: top - 4, class: "tick" }, name));
      for (const [cls, field, label] of series) {
        const d = points.map((p, i) => `${i ? "L" : "M"}${sx(i).toFixed(1)},${sy(p[field]).toFixed(1)}`).join(" ");
        root.append(svg("path", { d, class: `line ${cls}` }));
        points.forEach((p, i) => {
          const dot = svg("circle", { cx: sx(i).toFixed(1), cy: sy(p[field]).toFixed(1), r: 2.5, class: `dot ${cls}` });
          dot.append(svg("title", {}, `${when(p.start, this.granularity)}: ${p[field]} ${label}`));
          root.append(dot);
        });
      }
    });
    const labelY = PANELS[1] + PANEL_H + 20;
    points.forEach((p, i) => {
      if ((points.length - 1 - i) % span.tickEvery) return;
      const d = new Date(p.start);
      const text = this.granularity === USAGE_GRANULARITY.DAY ? d.toISOString().slice(5, 10) : d.toTimeString().slice(0, 5);
      root.append(svg("text", { x: sx(i), y: labelY, "text-anchor": "middle", class: "tick" }, text));
    });
    replace(this, root, h("div", { class: "legend" },
      h("span", { class: "key requests" }, "requests"),
      h("span", { class: "key prompt" }, "prompt tokens"),
      h("span", { class: "key completion" }, "completion tokens")));
  }
}

function stat(id, label, value, title) {
  return h("div", { class: "stat", title }, h("span", { class: "stat-label" }, label),
    h("strong", { class: "stat-value num", id: `usage-${id}` }, value));
}

function upTo(ms) {
  return ms === null || ms === undefined ? "—" : `≤ ${milliseconds(ms)}`;
}

class EndpointUsage extends HTMLElement {
  constructor() {
    super();
    this.granularity = USAGE_GRANULARITY.HOUR;
  }

  connectedCallback() {
    if (this.built) return;
    this.built = true;
    this.toggle = h("div", { class: "chips", role: "group", "aria-label": "Usage period" });
    this.chart = h("usage-chart");
    this.totals = h("div", { class: "usage-totals", id: "usage-totals" });
    this.keysBox = h("div");
    this.errors = h("div");
    replace(this, this.errors,
      h("section", { class: "card" }, h("div", { class: "row wrap" }, h("h2", { class: "card-title grow" }, "Requests and tokens"), this.toggle),
        this.chart, h("p", { class: "hint" }, "Every call the endpoint's URL answers is counted, whatever the run retention; a call shows up within seconds.")),
      this.totals,
      h("section", { class: "card" }, h("h2", { class: "card-title" }, "By key"), this.keysBox));
    this.render();
  }

  set deployment(value) { this._deployment = value; }

  get deployment() { return this._deployment; }

  get base() { return `/api/deployments/${encodeURIComponent(this.deployment.id)}/usage`; }

  // Polls while shown; stop() ends it (another tab, the page left).
  start() {
    this.stop();
    this.load();
    this.stopPolling = poll(() => this.load(), REFRESH_MS);
  }

  stop() { this.stopPolling?.(); this.stopPolling = null; }

  disconnectedCallback() { this.stop(); }

  choose(granularity) {
    if (granularity === this.granularity) return;
    this.granularity = granularity;
    this.report = null;
    this.keys = null;
    this.render();
    this.load();
  }

  async load() {
    if (!this.deployment) return;
    const granularity = this.granularity;
    const { starts, from, to } = usageWindow(granularity);
    const seq = (this.seq = (this.seq ?? 0) + 1);
    try {
      const [report, { keys }] = await Promise.all([
        api.get(`${this.base}?${new URLSearchParams({ granularity, from, to })}`),
        api.get(`${this.base}/keys?${new URLSearchParams({ from, to })}`),
      ]);
      if (seq !== this.seq) return;
      this.display(report, keys, granularity, starts);
      this.error = null;
    } catch (err) {
      if (seq !== this.seq) return;
      this.error = err.message;
    }
    this.render();
  }

  display(report, keys, granularity = this.granularity, starts = usageWindow(granularity).starts) {
    this.granularity = granularity;
    this.report = report;
    this.keys = keys;
    this.points = fillBuckets(report.buckets, starts);
    if (this.built) this.render();
  }

  render() {
    if (!this.built) return;
    replace(this.toggle, Object.entries(WINDOWS).map(([value, w]) => h("button", { type: "button", class: "chip-button",
      "aria-pressed": String(value === this.granularity), dataset: { granularity: value }, onclick: () => this.choose(value) }, `${w.label} (${w.by})`)));
    replace(this.errors, this.error ? errorBox(`${this.report ? "Couldn't refresh" : "Couldn't load"} usage: ${this.error}`) : null);
    if (!this.report) {
      this.chart.show(null);
      this.chart.hidden = Boolean(this.error);
      replace(this.totals);
      replace(this.keysBox, h("p", { class: "muted" }, this.error ? "—" : "Loading…"));
      return;
    }
    this.chart.hidden = false;
    this.chart.show(this.points, this.granularity);
    const t = this.report.total;
    replace(this.totals,
      stat("requests", "Requests", compact(t.requests)),
      stat("tokens", "Tokens", compact(t.promptTokens + t.completionTokens), `${t.promptTokens} prompt + ${t.completionTokens} completion`),
      stat("prompt-tokens", "Prompt", compact(t.promptTokens)),
      stat("completion-tokens", "Completion", compact(t.completionTokens)),
      stat("errors", "Errors 4xx / 5xx", `${t.errors["4xx"] ?? 0} / ${t.errors["5xx"] ?? 0}`),
      stat("cancelled", "Cancelled", compact(t.cancelled), "The client left before the answer ended"),
      stat("p50", "Latency p50", upTo(t.latencyMsP50), "Upper bound of the latency histogram bucket"),
      stat("p95", "Latency p95", upTo(t.latencyMsP95), "Upper bound of the latency histogram bucket"));
    this.renderKeys();
  }

  renderKeys() {
    const t = this.report.total;
    const rows = [...this.keys].sort((a, b) => b.usage.requests - a.usage.requests);
    const sum = (field) => rows.reduce((n, r) => n + r.usage[field], 0);
    const rest = { requests: t.requests - sum("requests"), promptTokens: t.promptTokens - sum("promptTokens"),
      completionTokens: t.completionTokens - sum("completionTokens") };
    if (!rows.length && !rest.requests) {
      replace(this.keysBox, emptyState("No keys", "Issue a key on the Overview tab; its calls are counted here."));
      return;
    }
    const cells = (u, errors) => [h("td", { class: "num" }, compact(u.requests)), h("td", { class: "num" }, compact(u.promptTokens)),
      h("td", { class: "num" }, compact(u.completionTokens)), h("td", { class: "num" }, errors)];
    replace(this.keysBox, h("table", { class: "table usage-keys" },
      h("thead", {}, h("tr", {}, ["Key", "Requests", "Prompt tokens", "Completion tokens", "Errors 4xx / 5xx"].map((c) => h("th", {}, c)))),
      h("tbody", {},
        rows.map(({ key, usage }) => h("tr", { dataset: { keyId: key.id } },
          h("td", {}, h("span", { class: key.enabled ? "strong" : "strong revoked" }, key.label),
            h("span", { class: "mono muted" }, ` ${key.prefix}…`), key.enabled ? null : [" ", statusBadge("revoked")]),
          cells(usage, `${usage.errors["4xx"] ?? 0} / ${usage.errors["5xx"] ?? 0}`))),
        rest.requests > 0 ? h("tr", { dataset: { keyId: "" } },
          h("td", { class: "muted", title: "Calls answered while the auth mode was none" }, "Without a key"),
          cells(rest, "—")) : null)));
  }
}

customElements.define("usage-chart", UsageChart);
customElements.define("endpoint-usage", EndpointUsage);
