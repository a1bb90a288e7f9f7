// Playground (#/playground[?adapter=<jobId>[&step=<n>]] or ?deployment=<id>&run=<runId>):
// chat with a base model or a trained adapter (final or a checkpoint); the reply streams in as
// it is generated. The reply can be held to a response format (JSON, a JSON schema, a choice
// of labels), and the model can be given tools: its calls are shown, and the next message
// answers them. With a stored run, its messages and parameters are filled in to replay it
// against any model here.
import { api, request } from "../api.js";
import { errorBox, field, h, replace } from "../dom.js";
import { dateTime, shortId } from "../format.js";
import { ADAPTER } from "../contract.js";
import { playgroundPrefill } from "../runs.js";

const DEMO_PROMPT = "You triage customer support tickets. Reply with exactly one line: LABEL: billing, LABEL: bug or LABEL: other.";
const MESSAGE_HINT = "Type a message. Enter sends, Shift+Enter adds a line.";

// What one SSE `data:` payload adds (an OpenAI chunk or completion, or the looser shapes some
// servers send): text, and tool-call fragments keyed by `index`.
export function chunkDelta(payload) {
  let data;
  try { data = JSON.parse(payload); } catch { return { text: payload, toolCalls: [] }; }
  if (typeof data === "string") return { text: data, toolCalls: [] };
  const choice = data?.choices?.[0];
  if (!choice) return { text: data?.content ?? data?.text ?? "", toolCalls: [] };
  const part = choice.delta ?? choice.message ?? {};
  return { text: part.content ?? "", toolCalls: (part.tool_calls || []).map((call, i) => ({ index: i, ...call })) };
}

// The tool calls so far with one chunk's fragments added: a call's id and name come once,
// its arguments in pieces.
export function mergeToolCalls(calls, fragments) {
  const merged = calls.map((call) => call && { ...call, function: { ...call.function } });
  for (const { index, id, type, function: fn = {} } of fragments) {
    const call = merged[index] ??= { id: "", type: "function", function: { name: "", arguments: "" } };
    if (id) call.id = id;
    if (type) call.type = type;
    if (fn.name) call.function.name = fn.name;
    if (fn.arguments) call.function.arguments += fn.arguments;
  }
  return merged;
}

export function prettyJson(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return null; }
}

function toolCallView(call) {
  return h("div", { class: "tool-call", dataset: { name: call.function.name } },
    h("span", { class: "strong" }, `Tool call: ${call.function.name}`),
    call.id ? h("span", { class: "muted mono" }, ` ${call.id}`) : null,
    h("pre", { class: "code" }, prettyJson(call.function.arguments) ?? call.function.arguments));
}

export function mount(main, { query }) {
  let mode = query.get("adapter") ? "adapter" : "base";
  let jobs = [];
  let history = [];
  let pending = [];
  let controller = null;
  let nextId = 1;
  let loaded = false;
  let replay = null;
  const baseSelect = h("select", { id: "pg-base", onchange: restart });
  const adapterSelect = h("select", { id: "pg-adapter", onchange: () => { fillSteps(); restart(); } });
  const stepSelect = h("select", { id: "pg-step", onchange: restart });
  const system = h("textarea", { id: "pg-system", rows: 3, placeholder: "Optional instructions sent before the conversation." });
  const temperature = h("input", { id: "pg-temperature", type: "number", min: "0", max: "2", step: "0.1", value: "0.7", placeholder: "default" });
  const maxTokens = h("input", { id: "pg-max-tokens", type: "number", min: "1", max: "4096", value: "256", placeholder: "default" });
  const format = h("response-format", { prefix: "pg" });
  const tools = h("tools-editor", { prefix: "pg" });
  const log = h("div", { class: "chat-log", "aria-live": "polite" });
  const input = h("textarea", { id: "pg-message", rows: 2, placeholder: MESSAGE_HINT,
    onkeydown: (e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); } } });
  const sendButton = h("button", { type: "submit", class: "button primary" }, "Send message");
  const stopButton = h("button", { type: "button", class: "button", hidden: true, onclick: () => controller?.abort() }, "Stop");
  const note = h("div");
  const modeBox = h("fieldset", { class: "radios inline" });
  const baseRow = field("Base model", baseSelect);
  const adapterRow = h("div", { class: "grid-2" }, field("Adapter", adapterSelect), field("Weights", stepSelect));

  function renderMode() {
    const hasAdapters = jobs.length > 0;
    if (loaded && !hasAdapters && mode === "adapter") mode = "base";
    replace(modeBox, h("legend", {}, "Chat with"),
      [["base", "Base model"], ["adapter", "Adapter"]].map(([value, label]) => h("label", { class: "radio" },
        h("input", { type: "radio", name: "pg-mode", value, checked: mode === value, disabled: value === "adapter" && !hasAdapters,
          onchange: () => { mode = value; renderMode(); restart(); } }), label)),
      hasAdapters ? null : h("span", { class: "hint" }, "No completed jobs yet: train one from the Overview."));
    baseRow.hidden = mode !== "base";
    adapterRow.hidden = mode !== "adapter";
  }

  function fillSteps() {
    const job = jobs.find((j) => j.id === adapterSelect.value);
    replace(stepSelect, h("option", { value: "" }, "Final adapter"),
      (job?.checkpoints || []).map((c) => h("option", { value: String(c.step) }, `Checkpoint step ${c.step}`)));
  }

  function clear() {
    controller?.abort();
    history = [];
    setPending([]);
    replace(log, h("p", { class: "muted empty-chat" }, "Say something to start."));
  }

  // Another model: a new chat, or the stored run's messages again when one is being replayed.
  function restart() {
    clear();
    if (replay) showRun(replay);
  }

  function showRun({ history: messages, composer, pending: calls }) {
    for (const message of messages) {
      history.push({ id: nextId++, ...message });
      const who = message.role === "tool" ? "Tool result" : message.role === "system" ? "System" : undefined;
      const out = bubble(message.role, message.content ?? "", who);
      if (message.tool_calls) showToolCalls(out, message.tool_calls);
    }
    setPending(calls);
    input.value = composer;
  }

  // The tool calls still waiting for a result; the next messages answer them, in order.
  function setPending(calls) {
    pending = calls;
    const call = pending[0];
    input.placeholder = call ? `Result of ${call.function.name} (${call.id}), as the tool would return it.` : MESSAGE_HINT;
  }

  function target() {
    if (mode === "base") return { baseModel: baseSelect.value };
    const step = stepSelect.value;
    return { adapter: step === "" ? { kind: ADAPTER.FINAL, jobId: adapterSelect.value } : { kind: ADAPTER.CHECKPOINT, jobId: adapterSelect.value, step: Number(step) } };
  }

  function bubble(role, text, who = role === "user" ? "You" : "Model") {
    const el = h("div", { class: `bubble ${role}` }, h("span", { class: "who" }, who), h("div", { class: "text" }, text));
    if (log.querySelector(".empty-chat")) replace(log);
    log.append(el);
    log.scrollTop = log.scrollHeight;
    return el.querySelector(".text");
  }

  function showToolCalls(out, calls) {
    const box = out.parentElement.querySelector(".tool-calls") ?? out.parentElement.appendChild(h("div", { class: "tool-calls stack" }));
    replace(box, calls.filter(Boolean).map(toolCallView));
  }

  function showJson(out, text) {
    const pretty = prettyJson(text);
    out.dataset.json = pretty === null ? "invalid" : "valid";
    if (pretty !== null) out.textContent = pretty;
    else out.after(h("p", { class: "hint error-text" }, "The reply is not valid JSON (cut short by Max tokens?)."));
  }

  // This turn's message: the user's, or the result of the first tool call still waiting.
  function addMessage(content) {
    const call = pending[0];
    if (!call) {
      history.push({ id: nextId++, role: "user", content });
      bubble("user", content);
      return;
    }
    history.push({ id: nextId++, role: "tool", tool_call_id: call.id, content });
    bubble("tool", content, `Tool result · ${call.function.name}`);
    setPending(pending.slice(1));
  }

  function undoMessage() {
    const message = history.pop();
    if (message?.role !== "tool") return;
    const call = history.findLast((m) => m.tool_calls)?.tool_calls.find((c) => c.id === message.tool_call_id);
    if (call) setPending([call, ...pending]);
  }

  // The response-format and tools fields, or null (the control to fix focused).
  function outputFields() {
    for (const control of [format, tools]) {
      if (control.check().error) {
        control.focusProblem();
        return null;
      }
    }
    return { ...format.fields().fields, ...tools.fields().fields };
  }

  function requestBody(output) {
    const messages = [...(system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []),
      ...history.map(({ id: _id, ...message }) => message)];
    const body = { ...target(), messages, stream: true, ...output };
    if (temperature.value !== "") body.temperature = Number(temperature.value);
    if (maxTokens.value !== "") body.maxTokens = Number(maxTokens.value);
    return body;
  }

  async function send(event) {
    event?.preventDefault();
    const content = input.value.trim();
    if (!content || controller) return;
    if (mode === "base" && !baseSelect.value) return;
    const output = outputFields();
    if (!output) return;
    input.value = "";
    addMessage(content);
    if (pending.length) return;
    const body = requestBody(output);
    const asJson = format.json;
    const out = bubble("assistant", "");
    out.classList.add("streaming");
    controller = new AbortController();
    sendButton.disabled = true;
    stopButton.hidden = false;
    let text = "";
    let calls = [];
    try {
      const response = await request("POST", "/api/inference/chat", body, { signal: controller.signal, raw: true });
      if (!response.ok) {
        const raw = await response.text();
        let message = raw || `HTTP ${response.status}`;
        try { message = JSON.parse(raw).error?.message ?? JSON.parse(raw).error ?? message; } catch { /* plain text */ }
        out.textContent = `[error] ${message}`;
        out.classList.add("error-text");
        undoMessage();
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const frames = buffer.split(/\r?\n\r?\n/);
        buffer = frames.pop();
        for (const frame of frames) {
          for (const line of frame.split(/\r?\n/)) {
            if (!line.startsWith("data:")) continue;
            const payload = line.slice(5).trim();
            if (payload === "[DONE]") continue;
            const delta = chunkDelta(payload);
            text += delta.text;
            out.textContent = text;
            if (delta.toolCalls.length) showToolCalls(out, calls = mergeToolCalls(calls, delta.toolCalls));
            log.scrollTop = log.scrollHeight;
          }
        }
      }
      calls = calls.filter(Boolean);
      history.push({ id: nextId++, role: "assistant", content: text || (calls.length ? null : ""), ...(calls.length ? { tool_calls: calls } : {}) });
      setPending(calls);
      if (asJson && !calls.length) showJson(out, text);
    } catch (err) {
      if (err.name === "AbortError") {
        out.textContent = `${text} [stopped]`;
        if (text) history.push({ id: nextId++, role: "assistant", content: text });
      } else {
        out.textContent = `[error] ${err.message}`;
        out.classList.add("error-text");
      }
    } finally {
      out.classList.remove("streaming");
      controller = null;
      sendButton.disabled = false;
      stopButton.hidden = true;
      input.focus();
    }
  }

  async function load() {
    try {
      const [models, list] = await Promise.all([api.get("/api/base-models"), api.get("/api/jobs")]);
      replace(baseSelect, (models.baseModels || []).map((m) => h("option", { value: m.name }, m.name)));
      jobs = (list.jobs || []).filter((j) => j.status === "completed");
      replace(adapterSelect, jobs.map((j) => h("option", { value: j.id }, `${j.name} (${shortId(j.id, 4, 4)})`)));
      const wanted = query.get("adapter");
      if (wanted && jobs.some((j) => j.id === wanted)) adapterSelect.value = wanted;
      else if (wanted) replace(note, errorBox(`Job ${wanted} has no final adapter to chat with (is it completed?).`));
      loaded = true;
      fillSteps();
      if (query.get("step") && [...stepSelect.options].some((o) => o.value === query.get("step"))) stepSelect.value = query.get("step");
      renderMode();
    } catch (err) {
      replace(note, errorBox(`Couldn't load models and jobs: ${err.message}`));
      return;
    }
    if (query.get("run")) await loadRun(query.get("deployment") || "", query.get("run"));
  }

  // The stored run's target when the Playground offers it (else the base model it ran on),
  // its system prompt, parameters and messages.
  async function loadRun(deploymentId, runId) {
    const runs = `/api/deployments/${encodeURIComponent(deploymentId)}/runs`;
    let run;
    try {
      run = (await api.get(`${runs}/${encodeURIComponent(runId)}`)).run;
    } catch (err) {
      replace(note, errorBox(`Couldn't load run ${runId}: ${err.message}`));
      return;
    }
    const prefill = playgroundPrefill(run);
    const job = prefill.adapter && jobs.find((j) => j.id === prefill.adapter.jobId);
    if (job) {
      mode = "adapter";
      adapterSelect.value = job.id;
      fillSteps();
      if ([...stepSelect.options].some((o) => o.value === prefill.adapter.step)) stepSelect.value = prefill.adapter.step;
    } else {
      mode = "base";
      if ([...baseSelect.options].some((o) => o.value === prefill.baseModel)) baseSelect.value = prefill.baseModel;
    }
    renderMode();
    system.value = prefill.system;
    temperature.value = prefill.temperature;
    maxTokens.value = prefill.maxTokens;
    format.load(prefill.format);
    tools.load(prefill.tools);
    replay = prefill;
    restart();
    replace(note, h("p", { class: "note", id: "pg-replay-note" },
      `Replaying run ${shortId(run.id)} (${dateTime(run.createdAt)}): its messages and parameters are filled in; Send asks the model chosen here. `,
      prefill.adapter && !job ? `Its adapter's job is not completed here, so the base model ${run.baseModel} is chosen. ` : null,
      prefill.leftOut.length ? `Not carried over (no control here): ${prefill.leftOut.join(", ")}. ` : null,
      h("a", { href: `#/endpoints/${encodeURIComponent(deploymentId)}?tab=runs&run=${encodeURIComponent(run.id)}` }, "Back to the run")));
  }

  renderMode();
  clear();
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Playground"),
      h("p", { class: "muted" }, "Chat with a base model or one of your trained adapters. Nothing here is deployed.")),
    note,
    h("div", { class: "columns wide-left" },
      h("section", { class: "card chat" }, log,
        h("form", { class: "composer", onsubmit: send },
          h("label", { for: input.id, class: "visually-hidden" }, "Message"), input,
          h("div", { class: "row" }, h("button", { type: "button", class: "button ghost", onclick: () => { replay = null; clear(); } }, "Clear chat"),
            h("span", { class: "grow" }), stopButton, sendButton))),
      h("div", { class: "stack" },
        h("section", { class: "card stack" }, h("h2", { class: "card-title" }, "Model"), modeBox, baseRow, adapterRow,
          field("System prompt", system),
          h("button", { type: "button", class: "link-button", onclick: () => { system.value = DEMO_PROMPT; } }, "Use the support-triage demo prompt"),
          h("div", { class: "grid-2" }, field("Temperature", temperature, "0 is greedy."), field("Max tokens", maxTokens))),
        h("section", { class: "card stack" }, h("h2", { class: "card-title" }, "Output"), format, tools))));
  load();
  return { destroy() { controller?.abort(); } };
}
