// <loss-chart>: train loss (solid) and eval loss (dashed) against the step, as SVG.
import { h, replace } from "../dom.js";
import { summarize } from "../stats.js";

const NS = "http://www.w3.org/2000/svg";
const MAX_POINTS = 2000;
const W = 640, H = 240, PAD = { left: 52, right: 16, top: 14, bottom: 32 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

class LossChart extends HTMLElement {
  constructor() {
    super();
    this.train = new Map();
    this.eval = new Map();
    this.advanced = false;
  }

  connectedCallback() { this.render(); }

  reset() { this.train.clear(); this.eval.clear(); this.render(); }

  addPoint({ step, loss, evalLoss }) {
    if (!Number.isFinite(step)) return;
    let changed = false;
    for (const [series, value] of [[this.train, loss], [this.eval, evalLoss]]) {
      if (Number.isFinite(value)) {
        series.set(step, value);
        if (series.size > MAX_POINTS) series.delete(series.keys().next().value);
        changed = true;
      }
    }
    if (changed) this.render();
  }

  render() {
    const train = [...this.train].sort((a, b) => a[0] - b[0]);
    const evals = [...this.eval].sort((a, b) => a[0] - b[0]);
    this.dataset.trainPoints = train.length;
    this.dataset.evalPoints = evals.length;
    if (!train.length && !evals.length) {
      replace(this, h("div", { class: "chart-empty" }, "Waiting for training.log events…"));
      return;
    }
    const toggle = h("label", { class: "advanced-toggle" },
      h("input", { type: "checkbox", role: "switch", checked: this.advanced,
        onchange: (e) => { this.advanced = e.target.checked; this.render(); } }),
      " Advanced");
    const all = [...train, ...evals];
    const steps = all.map((p) => p[0]);
    const values = all.map((p) => p[1]);
    let [x0, x1] = [Math.min(...steps), Math.max(...steps)];
    let [y0, y1] = [Math.min(...values), Math.max(...values)];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.08;
    y0 -= pad; y1 += pad;
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
    const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);

    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart" });
    root.append(svg("title", {}, `Loss by step: ${train.length} train points, ${evals.length} eval points`));
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(y), y2: sy(y), class: "grid" }));
      root.append(svg("text", { x: PAD.left - 8, y: sy(y) + 4, "text-anchor": "end", class: "tick" }, y.toFixed(3)));
    }
    const xTicks = Math.min(6, Math.max(1, Math.round(x1 - x0)));
    for (let i = 0; i <= xTicks; i++) {
      const x = Math.round(x0 + ((x1 - x0) * i) / xTicks);
      root.append(svg("text", { x: sx(x), y: H - PAD.bottom + 18, "text-anchor": "middle", class: "tick" }, x));
    }
    root.append(svg("text", { x: W - PAD.right, y: H - 4, "text-anchor": "end", class: "tick" }, "step"));
    for (const [points, cls] of [[train, "train"], [evals, "eval"]]) {
      if (!points.length) continue;
      const d = points.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
      root.append(svg("path", { d, class: `line ${cls}` }));
      for (const [x, y] of points.length <= 60 ? points : []) {
        root.append(svg("circle", { cx: sx(x), cy: sy(y), r: 2.5, class: `dot ${cls}` }));
      }
    }
    const last = (points) => (points.length ? points[points.length - 1][1].toFixed(4) : "—");
    const legend = h("div", { class: "legend" },
      h("span", { class: "key train" }, `train loss ${last(train)}`),
      h("span", { class: "key eval" }, `eval loss ${last(evals)}`));
    replace(this, root, legend, toggle,
      this.advanced ? statsTable([["train", train], ["eval", evals]]) : null);
  }
}

function statsTable(series) {
  const f = (x) => (Number.isFinite(x) ? x.toFixed(4) : "—");
  const rows = [
    ["Mean ± 95% CI", (s) => (Number.isFinite(s.half) ? `${f(s.mean)} ± ${f(s.half)}` : f(s.mean))],
    ["Std dev", (s) => f(s.std)],
    ["Variance", (s) => f(s.variance)],
    ["p90", (s) => f(s.p90)],
    ["p95", (s) => f(s.p95)],
  ];
  const stats = series.map(([name, points]) => [name, summarize(points.map((p) => p[1]))]);
  return h("table", { class: "stats" },
    h("thead", {}, h("tr", {}, h("th", {}, ""),
      ...stats.map(([name, s]) => h("th", { scope: "col" }, `${name} (n=${s ? s.n : 0})`)))),
    h("tbody", {}, ...rows.map(([label, show]) => h("tr", {}, h("th", { scope: "row" }, label),
      ...stats.map(([, s]) => h("td", {}, s ? show(s) : "—"))))));
}

customElements.define("loss-chart", LossChart);
