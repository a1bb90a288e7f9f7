// <run-list>: a deployment's stored runs, newest first, refreshed every few seconds while it
// is shown: filters (status, mark, text), "Load more" by cursor, the export downloads and what
// the run retention keeps. Choosing a run fires `run-open` ({ detail: { runId } }); the
// retention's "Change" fires `retention-edit`.
import { api, poll, request } from "../api.js";
import { emptyState, errorBox, h, replace } from "../dom.js";
import { dateTime, relativeTime } from "../format.js";
import { statusBadge } from "./widgets.js";
import { RETENTION, RUN_MARK, RUN_STATUS } from "../contract.js";

const REFRESH_MS = 3000;
const SEARCH_DELAY_MS = 300;

export function milliseconds(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

export function retentionText({ runRetentionMode: mode, runRetentionDays: days }) {
  if (mode === RETENTION.DISABLED) return "Run retention is disabled: nothing is kept; calls are answered but not recorded.";
  if (mode === RETENTION.UNLIMITED) return "Runs are kept until you delete them.";
  return `Runs older than ${days} day${days === 1 ? "" : "s"} are deleted.`;
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}

class RunList extends HTMLElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    this.runs = null;
    this.cursor = null;
    this.error = null;
    this.status = h("select", { id: "runs-status", onchange: () => this.reload() },
      h("option", { value: "" }, "All statuses"), Object.values(RUN_STATUS).map((s) => h("option", { value: s }, s)));
    this.mark = h("select", { id: "runs-mark", onchange: () => this.reload() },
      h("option", { value: "" }, "Any mark"), Object.values(RUN_MARK).map((m) => h("option", { value: m }, `Marked ${m}`)));
    this.search = h("input", { id: "runs-search", type: "search", placeholder: "Search prompts and answers", autocomplete: "off",
      "aria-label": "Search runs", oninput: () => { clearTimeout(this.typing); this.typing = setTimeout(() => this.reload(), SEARCH_DELAY_MS); } });
    this.retention = h("p", { class: "hint grow", id: "runs-retention" });
    this.exported = h("p", { class: "hint", role: "status" });
    this.body = h("div");
    this.more = h("div", { class: "row runs-more" });
    replace(this,
      h("section", { class: "card" },
        h("div", { class: "row wrap" }, this.retention,
          h("button", { type: "button", class: "button", onclick: () => this.export({ mark: RUN_MARK.GOOD }) }, "Export good runs"),
          h("button", { type: "button", class: "button", onclick: () => this.export({}) }, "Export all"),
          h("button", { type: "button", class: "button danger", onclick: () => this.deleteAll() }, "Delete all")),
        this.exported),
      h("div", { class: "toolbar" },
        h("label", { class: "visually-hidden", for: this.status.id }, "Status"), this.status,
        h("label", { class: "visually-hidden", for: this.mark.id }, "Mark"), this.mark, this.search),
      this.body, this.more);
    if (this.deployment) this.renderRetention();
  }

  set deployment(value) {
    this._deployment = value;
    if (this.built) { this.renderRetention(); this.render(); }
  }

  get deployment() { return this._deployment; }

  get base() { return `/api/deployments/${encodeURIComponent(this.deployment.id)}/runs`; }

  filters() {
    const params = new URLSearchParams();
    if (this.status.value) params.set("status", this.status.value);
    if (this.mark.value) params.set("mark", this.mark.value);
    if (this.search.value.trim()) params.set("q", this.search.value.trim());
    return params;
  }

  // Polls while shown; stop() ends it (another tab, a run opened, the page left).
  start() {
    this.stop();
    this.reload();
    this.stopPolling = poll(() => this.refresh(), REFRESH_MS);
  }

  stop() { this.stopPolling?.(); this.stopPolling = null; }

  disconnectedCallback() { this.stop(); }

  async fetchPage(cursor) {
    const params = this.filters();
    if (cursor) params.set("cursor", cursor);
    return api.get(`${this.base}?${params}`);
  }

  async reload() {
    this.loading = this.filters().toString();
    try {
      const page = await this.fetchPage(null);
      if (this.loading !== this.filters().toString()) return;
      this.runs = page.runs;
      this.cursor = page.nextCursor;
      this.error = null;
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  }

  // The first page again, kept in front of the pages already loaded when it reaches them.
  async refresh() {
    if (!this.runs) return this.reload();
    const filters = this.filters().toString();
    try {
      const page = await this.fetchPage(null);
      if (filters !== this.filters().toString()) return;
      const oldest = page.runs.at(-1);
      const at = oldest ? this.runs.findIndex((r) => r.id === oldest.id) : -1;
      if (!page.nextCursor) {
        this.runs = page.runs;
        this.cursor = null;
      } else if (at >= 0) {
        this.runs = [...page.runs, ...this.runs.slice(at + 1)];
      } else {
        this.runs = page.runs;
        this.cursor = page.nextCursor;
      }
      this.error = null;
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  }

  async loadMore() {
    try {
      const page = await this.fetchPage(this.cursor);
      const seen = new Set(this.runs.map((r) => r.id));
      this.runs = [...this.runs, ...page.runs.filter((r) => !seen.has(r.id))];
      this.cursor = page.nextCursor;
      this.error = null;
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  }

  async export(filters) {
    replace(this.exported, "Exporting…");
    try {
      const response = await request("GET", `${this.base}/export?${new URLSearchParams(filters)}`, undefined, { raw: true });
      if (!response.ok) {
        const text = await response.text();
        let message = text || `HTTP ${response.status}`;
        try { message = JSON.parse(text).error ?? message; } catch { /* plain text */ }
        replace(this.exported, h("span", { class: "error-text" }, `Export failed: ${message}`));
        return;
      }
      const name = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "")?.[1] || "runs.jsonl";
      download(await response.blob(), name);
      const count = Number(response.headers.get("x-arkor-exported") || 0);
      const skipped = Number(response.headers.get("x-arkor-skipped") || 0);
      replace(this.exported, `Exported ${count} run${count === 1 ? "" : "s"} to ${name}`,
        skipped ? ` (${skipped} skipped: failed, cancelled, tool calls or not text).` : ".");
    } catch (err) {
      replace(this.exported, h("span", { class: "error-text" }, `Export failed: ${err.message}`));
    }
  }

  async deleteAll() {
    if (!confirm(`Delete every stored run of ${this.deployment.slug}? This cannot be undone.`)) return;
    try {
      const { deleted } = await api.del(this.base);
      replace(this.exported, `Deleted ${deleted} run${deleted === 1 ? "" : "s"}.`);
    } catch (err) {
      replace(this.exported, h("span", { class: "error-text" }, `Delete failed: ${err.message}`));
    }
    this.reload();
  }

  renderRetention() {
    replace(this.retention, retentionText(this.deployment), " ",
      h("button", { type: "button", class: "link-button", onclick: () => this.dispatchEvent(new CustomEvent("retention-edit")) }, "Change"));
  }

  row(run) {
    const open = () => this.dispatchEvent(new CustomEvent("run-open", { detail: { runId: run.id } }));
    const answer = run.error ? h("span", { class: "error-text" }, run.error) : run.answerPreview;
    return h("tr", { class: "run-row", dataset: { runId: run.id }, onclick: open },
      h("td", {}, statusBadge(run.status)),
      h("td", { title: dateTime(run.createdAt) }, relativeTime(run.createdAt)),
      h("td", { class: "mono muted" }, run.keyPrefix ? `${run.keyPrefix}…` : "—"),
      h("td", { class: "num", title: "prompt → completion tokens" }, `${run.usage.promptTokens} → ${run.usage.completionTokens}`),
      h("td", { class: "num", title: `time to first token: ${milliseconds(run.ttftMs)}` }, milliseconds(run.latencyMs)),
      h("td", {}, h("button", { type: "button", class: "run-open run-clip", title: run.promptPreview, onclick: (e) => { e.stopPropagation(); open(); } }, run.promptPreview || "(empty)")),
      h("td", { class: "muted" }, h("span", { class: "run-clip", title: run.error || run.answerPreview }, answer)),
      h("td", {}, run.mark ? h("span", { class: `badge ${run.mark === RUN_MARK.GOOD ? "ok" : "bad"}` }, run.mark) : null));
  }

  render() {
    if (!this.built || !this.deployment) return;
    const filtered = this.filters().toString() !== "";
    const disabled = this.deployment.runRetentionMode === RETENTION.DISABLED;
    let content;
    if (this.error && !this.runs) content = errorBox(`Couldn't load runs: ${this.error}`);
    else if (!this.runs) content = h("p", { class: "muted" }, "Loading…");
    else if (!this.runs.length && disabled && !filtered) {
      content = emptyState("Nothing is kept", "Run retention is disabled for this endpoint: its calls are answered but not recorded. Change the retention to keep them.");
    } else if (!this.runs.length) {
      content = filtered ? emptyState("No runs match these filters", null)
        : emptyState("No runs yet", "Each call to this endpoint's URL shows up here within seconds.");
    } else {
      content = h("div", { class: "card flush" }, h("table", { class: "table runs" },
        h("thead", {}, h("tr", {}, ["Status", "Time", "Key", "Tokens", "Latency", "Prompt", "Answer", "Mark"].map((t) => h("th", {}, t)))),
        h("tbody", {}, this.runs.map((run) => this.row(run)))));
    }
    replace(this.body, this.error && this.runs ? errorBox(`Couldn't refresh runs: ${this.error}`) : null,
      disabled && this.runs?.length ? h("p", { class: "note" }, "Retention is disabled: new calls are not kept, and these go at the next sweep.") : null,
      content);
    replace(this.more, this.cursor && this.runs?.length
      ? h("button", { type: "button", class: "button", onclick: () => this.loadMore() }, "Load more") : null);
  }
}

customElements.define("run-list", RunList);
