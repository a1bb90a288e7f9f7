// <run-viewer>: one stored run, whole: the messages sent (tool calls and results included), the
// tools offered, the answer, the parameters, the timing and the error; mark it good or bad,
// delete it, or open it in the Playground. `show(deploymentId, runId)` loads one; it fires
// `run-close` (back to the list) and `run-changed` (marked or deleted).
import { api } from "../api.js";
import { card, errorBox, h, replace } from "../dom.js";
import { dateTime, relativeTime } from "../format.js";
import { playgroundHref, requestMessages, requestParameters, requestTools, runAnswer } from "../runs.js";
import { statusBadge } from "./widgets.js";
import { milliseconds } from "./run-list.js";
import { RUN_MARK } from "../contract.js";

const WHO = { user: "User", assistant: "Model", system: "System", tool: "Tool result" };

function pretty(value) {
  if (typeof value !== "string") return JSON.stringify(value, null, 2);
  try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
}

function toolCallView(call) {
  return h("div", { class: "tool-call", dataset: { name: call.function.name } },
    h("span", { class: "strong" }, `Tool call: ${call.function.name}`),
    call.id ? h("span", { class: "muted mono" }, ` ${call.id}`) : null,
    h("pre", { class: "code" }, pretty(call.function.arguments)));
}

function bubble(role, text, calls = [], who = WHO[role] ?? role) {
  return h("div", { class: `bubble ${role}` }, h("span", { class: "who" }, who),
    text === null ? null : h("div", { class: "text" }, text),
    calls.length ? h("div", { class: "tool-calls stack" }, calls.map(toolCallView)) : null);
}

function meta(pairs) {
  return h("dl", { class: "meta" }, pairs.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

class RunViewer extends HTMLElement {
  async show(deploymentId, runId) {
    this.at(deploymentId, runId);
    replace(this, this.back(), h("p", { class: "muted" }, "Loading…"));
    try {
      this.run = (await api.get(this.path)).run;
    } catch (err) {
      replace(this, this.back(), errorBox(`Couldn't load run ${runId}: ${err.message}`));
      return;
    }
    this.render();
  }

  // A run already at hand (the patterns page).
  display(deploymentId, run) {
    this.at(deploymentId, run.id);
    this.run = run;
    this.render();
  }

  at(deploymentId, runId) {
    this.deploymentId = deploymentId;
    this.path = `/api/deployments/${encodeURIComponent(deploymentId)}/runs/${encodeURIComponent(runId)}`;
    this.problem = h("div");
  }

  back() {
    return h("p", {}, h("button", { type: "button", class: "link-button", onclick: () => this.dispatchEvent(new CustomEvent("run-close")) }, "← All runs"));
  }

  async act(fn) {
    replace(this.problem);
    try {
      await fn();
      this.dispatchEvent(new CustomEvent("run-changed"));
    } catch (err) {
      replace(this.problem, errorBox(err.message));
    }
  }

  mark(value) {
    return this.act(async () => {
      this.run = (await api.patch(this.path, { mark: this.run.mark === value ? null : value })).run;
      this.render();
    });
  }

  remove() {
    if (!confirm("Delete this run? It cannot be undone.")) return;
    this.act(async () => {
      await api.del(this.path);
      this.dispatchEvent(new CustomEvent("run-close"));
    });
  }

  render() {
    const run = this.run;
    const answer = runAnswer(run);
    const tools = requestTools(run);
    const markButton = (value, label) => h("button", { type: "button", class: "chip-button", "aria-pressed": String(run.mark === value),
      onclick: () => this.mark(value) }, label);
    const params = requestParameters(run);
    replace(this, this.back(),
      h("div", { class: "page-head row wrap" },
        h("div", { class: "grow" }, h("h2", {}, `Run ${dateTime(run.createdAt)}`),
          h("p", { class: "muted" }, `${relativeTime(run.createdAt)} · ${run.route} · `, h("span", { class: "mono" }, run.id))),
        statusBadge(run.status),
        h("div", { class: "chips", role: "group", "aria-label": "Mark" }, markButton(RUN_MARK.GOOD, "Good"), markButton(RUN_MARK.BAD, "Bad")),
        h("a", { class: "button primary", href: playgroundHref(this.deploymentId, run.id) }, "Open in Playground"),
        h("button", { type: "button", class: "button danger", onclick: () => this.remove() }, "Delete")),
      this.problem,
      run.error ? errorBox(`HTTP ${run.httpStatus}: ${run.error}`) : null,
      h("div", { class: "columns wide-left" },
        h("div", { class: "stack" },
          card("Messages", h("div", { class: "chat-log run-messages" },
            requestMessages(run).map((m) => bubble(m.role, m.content, m.tool_calls)))),
          tools.length ? card("Tools", h("div", { class: "stack" }, tools.map((t) => h("details", {},
            h("summary", { class: "mono" }, t.function.name), h("pre", { class: "code" }, pretty(t))))),
          meta([["Tool choice", run.request.tool_choice === undefined ? "auto" : pretty(run.request.tool_choice)]])) : null,
          card("Answer", answer.text === null && !answer.toolCalls.length
            ? h("p", { class: "muted" }, "No answer was sent.")
            : h("div", { class: "chat-log run-messages", id: "run-answer" }, bubble("assistant", answer.text, answer.toolCalls)))),
        h("div", { class: "stack" },
          card("Timing", meta([["Created", dateTime(run.createdAt)], ["Latency", milliseconds(run.latencyMs)],
            ["First token", milliseconds(run.ttftMs)], ["Tokens", `${run.usage.promptTokens} prompt → ${run.usage.completionTokens} completion`],
            ["Stream", run.stream ? "yes" : "no"]])),
          card("Call", meta([["HTTP status", String(run.httpStatus)], ["Request id", h("span", { class: "mono" }, run.requestId)],
            ["Key", run.keyPrefix ? h("span", { class: "mono" }, `${run.keyPrefix}…`) : "none"], ["Base model", run.baseModel],
            ["Adapter", run.adapter ?? "none"]])),
          card("Parameters", h("div", { class: "stack" },
            params.length ? meta(params.map(([k, v]) => [k, h("span", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v))]))
              : h("p", { class: "muted" }, "None."),
            h("details", { class: "advanced" }, h("summary", {}, "Request JSON"), h("pre", { class: "code" }, pretty(run.request))),
            h("details", { class: "advanced" }, h("summary", {}, "Response JSON"), h("pre", { class: "code" }, run.response ? pretty(run.response) : "null")))))));
  }
}

customElements.define("run-viewer", RunViewer);
