// Patterns (#/patterns): every component on one page, for checking both themes at a glance.
import { card, emptyState, errorBox, field, h } from "../dom.js";
import { copyButton, statusBadge } from "../components/widgets.js";
import { usageWindow } from "../components/endpoint-usage.js";
import { AUTH, RUN_MARK, RUN_STATUS, USAGE_GRANULARITY } from "../contract.js";

const SAMPLE = {
  slug: "support-bot", authMode: AUTH.FIXED_KEY,
  url: "http://127.0.0.1:8787/d/support-bot/v1/chat/completions", baseUrl: "http://127.0.0.1:8787/d/support-bot/v1",
};

const SAMPLE_RUN = {
  id: "3f0c2a8e-6d1b-4c59-9a7e-1b2c3d4e5f60", deploymentId: "sample", route: "chat.completions", status: RUN_STATUS.COMPLETED,
  error: null, httpStatus: 200, requestId: "req_sample", keyId: "k", keyPrefix: "ark_live_abcd1234", baseModel: "HuggingFaceTB/SmolLM2-135M-Instruct",
  adapter: null, stream: false, usage: { promptTokens: 31, completionTokens: 4 }, ttftMs: 42, latencyMs: 118, mark: RUN_MARK.GOOD,
  promptPreview: "My card was charged twice.", answerPreview: "LABEL: billing", createdAt: "2025-01-01T12:00:00Z",
  request: { model: "support-bot", temperature: 0, max_tokens: 16, messages: [
    { role: "system", content: "Reply with one label." }, { role: "user", content: "My card was charged twice." }] },
  response: { object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: "LABEL: billing" }, finish_reason: "stop" }] },
};

function sampleUsage() {
  const bucket = (requests) => ({ requests, promptTokens: requests * 31, completionTokens: requests * 5, errors: { "4xx": requests > 8 ? 1 : 0, "5xx": 0 },
    cancelled: 0, latencyMsMean: 90, latencyMsP50: 100, latencyMsP95: 250, latencyMsP99: 500 });
  const buckets = usageWindow(USAGE_GRANULARITY.HOUR).starts.map((start, i) => ({ start: new Date(start).toISOString(), ...bucket(Math.round(6 + 5 * Math.sin(i / 3))) }))
    .filter((b) => b.requests > 2);
  const total = bucket(buckets.reduce((n, b) => n + b.requests, 0));
  const key = (id, label, enabled, requests) => ({ key: { id, label, prefix: `ark_live_${id}`, enabled }, usage: bucket(requests) });
  const usage = h("endpoint-usage");
  usage.display({ buckets, total }, [key("abcd1234", "production", true, total.requests - 12), key("efgh5678", "staging", false, 9)]);
  return usage;
}

export function mount(main) {
  const viewer = h("run-viewer");
  viewer.display("sample", SAMPLE_RUN);
  const chart = h("loss-chart");
  for (let step = 1; step <= 30; step++) {
    chart.addPoint({ step, loss: 2.4 * Math.exp(-step / 9) + 0.3 + 0.05 * Math.sin(step), evalLoss: step % 5 === 0 ? 2.5 * Math.exp(-step / 10) + 0.4 : null });
  }
  const emptyChart = h("loss-chart");
  const keyed = h("quick-start");
  keyed.deployment = SAMPLE;
  const open = h("quick-start");
  open.deployment = { ...SAMPLE, authMode: AUTH.NONE };
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Patterns"), h("p", { class: "muted" }, "Every Studio component, as the pages use them.")),
    card("Buttons",
      h("div", { class: "row wrap" }, h("button", { class: "button primary", type: "button" }, "Primary"), h("button", { class: "button", type: "button" }, "Default"),
        h("button", { class: "button ghost", type: "button" }, "Ghost"), h("button", { class: "button danger", type: "button" }, "Danger"),
        h("button", { class: "button", type: "button", disabled: true }, "Disabled"), h("button", { class: "button small", type: "button" }, "Small"),
        copyButton("copied text", "Copy"), h("button", { type: "button", class: "link-button" }, "Link button"))),
    card("Status badges", h("div", { class: "row wrap" },
      ["queued", "running", "completed", "failed", "cancelled", "enabled", "disabled", "revoked"].map(statusBadge))),
    card("Filter chips", h("div", { class: "chips" }, ["All", "Running", "Completed"].map((l, i) => h("button", { type: "button", class: "chip-button", "aria-pressed": String(i === 0) }, l)))),
    card("Form fields",
      h("div", { class: "grid-2" }, field("Text", h("input", { placeholder: "Placeholder" }), "A hint under the field."),
        field("Select", h("select", {}, h("option", {}, "One"), h("option", {}, "Two")))),
      h("retention-fields", { "allow-default": true })),
    card("Target picker", h("target-picker")),
    card("Response format and tools", h("div", { class: "grid-2" }, h("response-format"), h("tools-editor"))),
    card("Loss chart", chart, emptyChart),
    card("Messages", h("div", { class: "stack" }, errorBox("Deployment slug is already taken"),
      h("div", { class: "warn-box" }, "Event stream interrupted."),
      h("p", { class: "note" }, "Auth is set to none; keys are not enforced."),
      h("div", { class: "callout amber" }, h("strong", {}, "Copy this key now. It cannot be shown again."),
        h("div", { class: "row" }, h("code", { class: "secret" }, "ark_live_EXAMPLEexampleEXAMPLEexample0000aa"), copyButton("ark_live_EXAMPLE")),
        h("button", { type: "button", class: "button small" }, "I've saved it")))),
    card("Empty state", emptyState("No endpoints yet", "Create one to expose a model at its own URL.", h("a", { class: "button", href: "#/endpoints" }, "New endpoint"))),
    card("List rows", h("ul", { class: "list" },
      h("li", {}, h("a", { class: "list-row", href: "#/patterns" }, statusBadge("completed"), h("span", { class: "grow strong" }, "support-triage"), h("span", { class: "muted" }, "41s"))),
      h("li", { class: "list-row" }, h("span", { class: "grow revoked" }, h("span", { class: "strong" }, "staging"), h("span", { class: "mono muted" }, " ark_live_abcd1234…")), h("span", { class: "muted" }, "never used"), statusBadge("revoked")))),
    card("Table", h("table", { class: "table" }, h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Name"), h("th", {}, "Duration"))),
      h("tbody", {}, h("tr", {}, h("td", {}, statusBadge("running")), h("td", {}, h("a", { href: "#/patterns" }, "support-triage")), h("td", { class: "num" }, "1m 05s"))))),
    card("Chat", h("div", { class: "chat-log" }, h("div", { class: "bubble user" }, h("span", { class: "who" }, "You"), h("div", { class: "text" }, "My card was charged twice.")),
      h("div", { class: "bubble assistant" }, h("span", { class: "who" }, "Model"), h("div", { class: "text" }, "LABEL: billing")),
      h("div", { class: "bubble assistant" }, h("span", { class: "who" }, "Model"), h("div", { class: "text error-text" }, "[error] Job not found")))),
    card("Endpoint tabs", h("div", { class: "subtabs", role: "tablist" },
      h("button", { type: "button", role: "tab", "aria-selected": "false" }, "Overview"),
      h("button", { type: "button", role: "tab", "aria-selected": "true" }, "Runs"))),
    card("Run viewer", viewer),
    card("Endpoint usage", sampleUsage()),
    keyed, open);
  return {};
}
