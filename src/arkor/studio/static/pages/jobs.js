// Jobs (#/jobs): every training job, searchable, filtered by status, refreshed every 5 s.
import { api, poll } from "../api.js";
import { emptyState, errorBox, h, refresh, replace } from "../dom.js";
import { duration, relativeTime, shortId } from "../format.js";
import { statusBadge } from "../components/widgets.js";

const FILTERS = [["all", "All"], ["running", "Running"], ["completed", "Completed"], ["queued", "Queued"], ["failed", "Failed"], ["cancelled", "Cancelled"]];

export function mount(main) {
  let jobs = null;
  let error = null;
  let filter = "all";
  const body = h("div");
  const search = h("input", { type: "search", id: "jobs-search", placeholder: "Search by name or ID…", oninput: render });
  const chips = h("div", { class: "chips", role: "group", "aria-label": "Filter by status" });

  function renderChips() {
    replace(chips, FILTERS.map(([value, label]) => h("button", {
      type: "button", class: "chip-button", "aria-pressed": String(filter === value),
      onclick: () => { filter = value; renderChips(); render(); },
    }, label)));
  }

  function render() {
    if (error) { replace(body, errorBox(`Failed to load jobs: ${error}`)); return; }
    if (!jobs) { replace(body, h("p", { class: "muted" }, "Loading…")); return; }
    if (!jobs.length) { replace(body, emptyState("No jobs yet", "Start one from the Overview.", h("a", { class: "button", href: "#/" }, "Run training"))); return; }
    const q = search.value.trim().toLowerCase();
    const shown = jobs.filter((j) => (filter === "all" || j.status === filter) &&
      (!q || j.name.toLowerCase().includes(q) || j.id.toLowerCase().includes(q)));
    if (!shown.length) { replace(body, emptyState("No matches", "Try another search or status.")); return; }
    refresh(body, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["Status", "Name", "Duration", "Created", "ID"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, shown.map((job) => h("tr", {},
        h("td", {}, statusBadge(job.status)),
        h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.name)),
        h("td", { class: "num" }, duration(job)),
        h("td", { title: job.createdAt }, relativeTime(job.createdAt)),
        h("td", { class: "mono", title: job.id }, shortId(job.id)))))));
  }

  async function load() {
    try {
      jobs = (await api.get("/api/jobs")).jobs;
      error = null;
    } catch (err) {
      error = err.message;
    }
    render();
  }

  renderChips();
  main.append(
    h("div", { class: "page-head row" }, h("h1", { class: "grow" }, "Jobs"),
      h("button", { type: "button", class: "button", "aria-label": "Refresh", title: "Refresh", onclick: load }, "↻ Refresh")),
    h("div", { class: "toolbar" }, h("label", { for: "jobs-search", class: "visually-hidden" }, "Search jobs"), search, chips),
    h("section", { class: "card flush" }, body));
  render();
  load();
  const stop = poll(load, 5000);
  return { destroy: stop };
}
