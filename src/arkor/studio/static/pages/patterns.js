// Patterns (#/patterns): every component on one page, for checking both themes at a glance.
import { card, emptyState, errorBox, field, h } from "../dom.js";
import { copyButton, statusBadge } from "../components/widgets.js";
import { AUTH } from "../contract.js";

const SAMPLE = {
  slug: "support-bot", authMode: AUTH.FIXED_KEY,
  url: "http://127.0.0.1:8787/d/support-bot/v1/chat/completions", baseUrl: "http://127.0.0.1:8787/d/support-bot/v1",
};

export function mount(main) {
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
    keyed, open);
  return {};
}
