// What a stored run holds, read once for the run viewer and the Playground: its request as
// chat messages (chat completions, legacy completions and the Responses API alike), its answer
// (text and tool calls), its parameters, and the Playground fields that replay it.
import { ADAPTER } from "./contract.js";

// The request fields shown as the conversation, the tools or the output format, not as parameters.
const CONVERSATION = ["messages", "input", "prompt", "instructions", "tools", "tool_choice",
  "parallel_tool_calls", "response_format", "structured_outputs", "text"];
// The fields the Playground has controls for (or sets itself); the rest are named as left out.
const REPLAYED = [...CONVERSATION, "model", "stream", "stream_options", "temperature", "max_tokens",
  "max_completion_tokens", "max_output_tokens"];
const ADAPTER_KEY = /^job:(.+):([a-z]+)(?::(\d+))?$/;

export function playgroundHref(deploymentId, runId) {
  return `#/playground?deployment=${encodeURIComponent(deploymentId)}&run=${encodeURIComponent(runId)}`;
}

// A message's content as text: a string, or its parts' text (other parts named in brackets).
export function contentText(content) {
  if (content === null || content === undefined) return null;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return JSON.stringify(content);
  return content.map((part) => (typeof part === "string" ? part
    : typeof part?.text === "string" ? part.text : `[${part?.type ?? "part"}]`)).join("");
}

function toolCall(id, name, args) {
  return { id: id ?? "", type: "function", function: { name: name ?? "", arguments: typeof args === "string" ? args : JSON.stringify(args ?? {}) } };
}

function chatMessage(message) {
  const out = { role: message.role === "developer" ? "system" : message.role, content: contentText(message.content) };
  if (Array.isArray(message.tool_calls) && message.tool_calls.length) {
    out.tool_calls = message.tool_calls.map((c) => toolCall(c.id, c.function?.name, c.function?.arguments));
  }
  if (message.tool_call_id) out.tool_call_id = message.tool_call_id;
  return out;
}

// The Responses API's input items as chat messages: function calls join one assistant message.
function responsesMessages(request) {
  const input = typeof request.input === "string" ? [{ role: "user", content: request.input }] : request.input || [];
  const messages = typeof request.instructions === "string" ? [{ role: "system", content: request.instructions }] : [];
  for (const item of input) {
    if (item?.type === "function_call") {
      const last = messages.at(-1);
      const call = toolCall(item.call_id, item.name, item.arguments);
      if (last?.role === "assistant" && last.tool_calls) last.tool_calls.push(call);
      else messages.push({ role: "assistant", content: null, tool_calls: [call] });
    } else if (item?.type === "function_call_output") {
      messages.push({ role: "tool", tool_call_id: item.call_id, content: contentText(item.output) });
    } else if (item?.role) {
      messages.push(chatMessage(item));
    }
  }
  return messages;
}

// The conversation the run was sent, as chat messages.
export function requestMessages(run) {
  const request = run.request || {};
  if (Array.isArray(request.messages)) return request.messages.map(chatMessage);
  if ("input" in request) return responsesMessages(request);
  if ("prompt" in request) {
    const prompts = Array.isArray(request.prompt) ? request.prompt : [request.prompt];
    return prompts.map((prompt) => ({ role: "user", content: contentText(prompt) }));
  }
  return [];
}

// The run's answer: { text, toolCalls } (text null when it answered only with calls, or not at all).
export function runAnswer(run) {
  const response = run.response;
  if (!response) return { text: null, toolCalls: [] };
  if (Array.isArray(response.output)) {
    const texts = [];
    const toolCalls = [];
    for (const item of response.output) {
      if (item?.type === "message") texts.push(contentText(item.content) ?? "");
      if (item?.type === "function_call") toolCalls.push(toolCall(item.call_id, item.name, item.arguments));
    }
    return { text: texts.length ? texts.join("") : null, toolCalls };
  }
  const choice = response.choices?.[0] ?? {};
  if (typeof choice.text === "string") return { text: choice.text, toolCalls: [] };
  const message = choice.message ?? {};
  return { text: contentText(message.content), toolCalls: (message.tool_calls || []).map((c) => toolCall(c.id, c.function?.name, c.function?.arguments)) };
}

// The tools offered, in the chat shape ({type: "function", function: {...}}).
export function requestTools(run) {
  const tools = run.request?.tools;
  if (!Array.isArray(tools)) return [];
  return tools.map((tool) => (tool?.function ? tool
    : { type: "function", function: Object.fromEntries(["name", "description", "parameters", "strict"]
      .filter((k) => tool?.[k] !== undefined).map((k) => [k, tool[k]])) }));
}

// Every other request field, as [name, value] pairs.
export function requestParameters(run) {
  return Object.entries(run.request || {}).filter(([name]) => !CONVERSATION.includes(name));
}

function maxTokensOf(request) {
  return request.max_tokens ?? request.max_completion_tokens ?? request.max_output_tokens ?? null;
}

// The <response-format> fields the run asked for.
export function formatOf(request) {
  const choice = request.structured_outputs?.choice;
  if (Array.isArray(choice)) return { format: "choice", choices: choice.join("\n") };
  const chat = request.response_format;
  const responses = request.text?.format;
  const type = chat?.type ?? responses?.type;
  if (type === "json_object") return { format: "json_object" };
  if (type === "json_schema") {
    const spec = chat ? chat.json_schema ?? {} : responses;
    return { format: "json_schema", schema: JSON.stringify(spec.schema ?? {}, null, 2), name: spec.name ?? "answer", strict: Boolean(spec.strict) };
  }
  return { format: "text" };
}

// The <tools-editor> fields the run asked for.
function toolsOf(run) {
  const choice = run.request?.tool_choice;
  const name = choice?.function?.name ?? choice?.name;
  return { tools: requestTools(run), choice: typeof choice === "string" ? choice : name ? `fn:${name}` : "auto",
    parallel: run.request?.parallel_tool_calls !== false };
}

// The adapter the run was served by, from its key (job:<id>:final, job:<id>:checkpoint:<step>).
export function adapterOf(run) {
  const match = ADAPTER_KEY.exec(run.adapter || "");
  if (!match || ![ADAPTER.FINAL, ADAPTER.CHECKPOINT].includes(match[2])) return null;
  return { jobId: match[1], step: match[2] === ADAPTER.CHECKPOINT ? match[3] : "" };
}

// What the Playground fills in to replay the run: the leading system messages as its system
// prompt, the last user message (or tool result) in the composer and the rest as the chat, the
// call that result answers as pending, and the parameters it has controls for.
export function playgroundPrefill(run) {
  const request = run.request || {};
  const messages = requestMessages(run);
  const systems = [];
  while (messages[0]?.role === "system") systems.push(messages.shift().content ?? "");
  const last = messages.at(-1);
  const composer = last && (last.role === "user" || last.role === "tool") ? messages.pop() : null;
  let pending = [];
  if (composer?.role === "tool") {
    const calls = messages.findLast((m) => m.tool_calls)?.tool_calls || [];
    const answered = new Set(messages.filter((m) => m.role === "tool").map((m) => m.tool_call_id));
    pending = calls.filter((call) => !answered.has(call.id));
  }
  const temperature = request.temperature;
  const maxTokens = maxTokensOf(request);
  return {
    system: systems.join("\n\n"), history: messages, composer: composer?.content ?? "", pending,
    temperature: typeof temperature === "number" ? String(temperature) : "",
    maxTokens: typeof maxTokens === "number" ? String(maxTokens) : "",
    format: formatOf(request), tools: toolsOf(run), adapter: adapterOf(run), baseModel: run.baseModel,
    leftOut: Object.keys(request).filter((name) => !REPLAYED.includes(name)),
  };
}
