// Job detail (#/jobs/<id>): live loss chart and events from the job's SSE stream, the job
// row (polled every 5 s), checkpoints, cancel, and the ways on: Playground and Deploy.
import { api, eventsUrl, poll } from "../api.js";
import { card, errorBox, h, refresh, replace } from "../dom.js";
import { clock, dateTime, duration, shortId } from "../format.js";
import { copyButton, statusBadge } from "../components/widgets.js";
import { EVENT, TERMINAL_STATUS } from "../contract.js";

const MAX_ROWS = 500;
const TERMINAL = TERMINAL_STATUS;
const EVENTS = [EVENT.STARTED, EVENT.LOG, EVENT.CHECKPOINT, ...Object.keys(TERMINAL), "end"];

function datasetLabel(source) {
  if (!source) return "—";
  if (source.type === "upload") return `upload ${shortId(source.uploadId, 8, 4)}`;
  if (source.type === "huggingface") return `${source.name}${source.split ? ` (${source.split})` : ""}`;
  return source.path || source.url || source.type;
}

function describe(type, data) {
  if (type === EVENT.LOG) {
    const parts = [`step=${data.step}`];
    if (Number.isFinite(data.loss)) parts.push(`loss=${data.loss.toFixed(4)}`);
    if (Number.isFinite(data.evalLoss)) parts.push(`evalLoss=${data.evalLoss.toFixed(4)}`);
    return parts.join(" ");
  }
  if (type === EVENT.CHECKPOINT) return `step=${data.step}`;
  if (type === EVENT.COMPLETED) {
    const n = (data.artifacts || []).length;
    return `${n} artifact${n === 1 ? "" : "s"}`;
  }
  if (type === EVENT.FAILED) return data.error || "failed";
  if (type === EVENT.STARTED) {
    const m = data.metadata || {};
    const parts = ["numExamples", "totalSteps", "trainableParams", "device"].filter((k) => m[k] !== undefined).map((k) => `${k}=${m[k]}`);
    return parts.join(" ") || "started";
  }
  return "";
}

export function mount(main, { param: jobId }) {
  let job = null;
  let loadError = null;
  let sseStatus = null;
  let liveStartedAt = null;
  let liveCompletedAt = null;
  let artifacts = null;
  let failure = null;
  const checkpoints = new Set();
  const rows = [];
  const chart = h("loss-chart");
  const eventsList = h("ol", { class: "events", "aria-live": "off" });
  const banner = h("div");
  const actions = h("div", { class: "row wrap" });
  const title = h("h1", { class: "grow" }, "Job");
  const sidebar = h("dl", { class: "meta" });
  const checkpointBox = h("div");
  const actionError = h("div");

  function status() {
    const polled = job?.status;
    if (sseStatus && sseStatus !== "running") return sseStatus;
    if (["completed", "failed", "cancelled"].includes(polled)) return polled;
    return sseStatus || polled || "queued";
  }

  let cancelling = false;

  async function cancel() {
    if (!confirm("Cancel this training run? Its checkpoints so far are kept.")) return;
    replace(actionError);
    cancelling = true;
    render();
    try {
      job = (await api.post(`/api/jobs/${encodeURIComponent(jobId)}/cancel`)).job;
    } catch (err) {
      replace(actionError, errorBox(`Couldn't cancel: ${err.message}`));
    }
    cancelling = false;
    render();
  }

  function render() {
    const st = status();
    title.textContent = job?.name || shortId(jobId, 8, 6);
    const done = st === "completed";
    const cancellable = job && ["queued", "running"].includes(st);
    refresh(actions, statusBadge(st),
      cancellable ? h("button", { type: "button", class: "button danger", disabled: cancelling, onclick: cancel }, cancelling ? "Cancelling…" : "Cancel run") : null,
      done ? h("a", { class: "button", href: `#/playground?adapter=${encodeURIComponent(jobId)}` }, "Open in Playground") : null,
      done ? h("a", { class: "button primary", href: `#/endpoints?new=1&job=${encodeURIComponent(jobId)}` }, "Deploy this adapter") : null);
    const live = { ...job, status: st, startedAt: job?.startedAt || liveStartedAt, completedAt: job?.completedAt || liveCompletedAt };
    const rowsMeta = [
      ["Status", statusBadge(st)], ["Duration", duration(live)], ["Created", dateTime(job?.createdAt)],
      ["Started", dateTime(live.startedAt)], ["Completed", dateTime(live.completedAt)],
      ["Base model", job?.config?.model || "—"], ["Dataset", datasetLabel(job?.config?.datasetSource)],
      ["Artifacts", artifacts === null ? "—" : String(artifacts)],
      ["Job ID", h("span", { class: "row" }, h("span", { class: "mono", title: jobId }, shortId(jobId, 8, 6)), copyButton(jobId, "Copy", "Copy job ID"))],
    ];
    refresh(sidebar, rowsMeta.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const steps = [...new Set([...(job?.checkpoints || []).map((c) => c.step), ...checkpoints])].sort((a, b) => a - b);
    refresh(checkpointBox, steps.length
      ? h("ul", { class: "list" }, steps.map((step) => h("li", { class: "list-row" },
        h("span", { class: "grow" }, `step ${step}`),
        h("a", { href: `#/playground?adapter=${encodeURIComponent(jobId)}&step=${step}` }, "Chat"),
        h("a", { href: `#/endpoints?new=1&job=${encodeURIComponent(jobId)}&step=${step}` }, "Deploy"))))
      : h("p", { class: "muted" }, "No checkpoints yet."));
    const failedText = failure || (st === "failed" ? job?.error : null);
    refresh(banner,
      loadError ? errorBox(`Failed to load job: ${loadError}`) : null,
      job === undefined ? errorBox("This job is not in the current project. Check the Jobs list.") : null,
      failedText ? errorBox(`Job failed: ${failedText}`) : null,
      streamBroken ? h("div", { class: "warn-box", role: "status" }, "Event stream interrupted.") : null);
  }

  function addRow(time, type, message) {
    rows.push(h("li", {}, h("time", {}, clock(time)), h("span", { class: "event-type" }, type), h("span", { class: "event-msg" }, message)));
    if (rows.length > MAX_ROWS) rows.shift();
    replace(eventsList, rows);
    eventsList.scrollTop = eventsList.scrollHeight;
  }

  let streamBroken = false;
  let source = null;

  // Opened once the job is known to be in this project, so an unknown id streams nothing.
  function listen() {
  source = new EventSource(eventsUrl(jobId));
  for (const type of EVENTS) {
    source.addEventListener(type, (event) => {
      let data = {};
      try { data = JSON.parse(event.data || "{}"); } catch { /* keep-alives and odd frames */ }
      streamBroken = false;
      if (type === "end") { source.close(); render(); return; }
      if (type === EVENT.STARTED) { sseStatus = "running"; liveStartedAt = data.timestamp; }
      if (type === EVENT.LOG) chart.addPoint({ step: data.step, loss: data.loss, evalLoss: data.evalLoss });
      if (type === EVENT.CHECKPOINT) checkpoints.add(data.step);
      if (TERMINAL[type]) { sseStatus = TERMINAL[type]; liveCompletedAt = data.timestamp; }
      if (type === EVENT.COMPLETED) artifacts = (data.artifacts || []).length;
      if (type === EVENT.FAILED) failure = data.error || "failed";
      addRow(data.timestamp, type, describe(type, data));
      render();
    });
  }
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED && sseStatus && sseStatus !== "running") return;
    streamBroken = true;
    render();
  };
  }

  async function load() {
    try {
      const { jobs } = await api.get("/api/jobs");
      job = jobs.find((j) => j.id === jobId);
      loadError = null;
      if (job && !source) listen();
    } catch (err) {
      loadError = err.message;
    }
    render();
  }

  replace(eventsList, h("li", { class: "muted" }, "Listening for events…"));
  main.append(
    h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
    h("div", { class: "page-head row wrap" }, title, actions),
    actionError, banner,
    h("div", { class: "columns wide-left" },
      h("div", { class: "stack" },
        card("Loss", chart),
        card("Events", eventsList)),
      h("div", { class: "stack" },
        card("Details", sidebar),
        card("Checkpoints", checkpointBox))));
  render();
  load();
  const stop = poll(load, 5000);
  return { destroy() { stop(); source?.close(); } };
}
