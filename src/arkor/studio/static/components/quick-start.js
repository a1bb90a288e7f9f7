// <quick-start>: copy-pasteable samples for a deployment (contract §4.6), using the
// deployment's real URLs; the auth lines follow its auth mode. Beyond the contract's chat
// sample: structured output (a JSON schema), the Responses API and legacy completions.
import { h, replace } from "../dom.js";
import { copyButton } from "./widgets.js";
import { AUTH, TARGET } from "../contract.js";

// The model field: ignored where the deployment pins one model; on a model menu it picks one.
const IGNORED = "ignored";
const MENU_MODEL = "MODEL_NAME";

export const LANGUAGES = [
  ["curl", "cURL"], ["python", "Python (OpenAI SDK)"], ["javascript", "JavaScript (OpenAI SDK)"],
];
export const OPERATIONS = [
  ["chat", "POST /v1/chat/completions"],
  ["structured", "Structured output: POST /v1/chat/completions"],
  ["responses", "Responses API: POST /v1/responses"],
  ["completions", "Completions (legacy): POST /v1/completions"],
];
const TICKET = "I was charged twice for my subscription this month.";
const TICKET_SCHEMA = {
  type: "object",
  properties: { label: { type: "string", enum: ["billing", "bug", "other"] }, urgent: { type: "boolean" } },
  required: ["label", "urgent"],
  additionalProperties: false,
};
const CURL_BODIES = {
  chat: { model: "ignored", messages: [{ role: "user", content: "Hello!" }] },
  structured: { model: "ignored", messages: [{ role: "user", content: TICKET }],
    response_format: { type: "json_schema", json_schema: { name: "ticket", strict: true, schema: TICKET_SCHEMA } } },
  responses: { model: "ignored", input: "Hello!", max_output_tokens: 32 },
  completions: { model: "ignored", prompt: "Once upon a time", max_tokens: 16 },
};
// Each operation's Python: what it imports, then what it does with `client`.
const PYTHON = {
  chat: [["from openai import OpenAI"], [
    "response = client.chat.completions.create(", `    model="ignored",`,
    `    messages=[{"role": "user", "content": "Hello!"}],`, ")",
    "print(response.choices[0].message.content)"]],
  structured: [["from typing import Literal", "", "from openai import OpenAI", "from pydantic import BaseModel"], [
    "", "class Ticket(BaseModel):", `    label: Literal["billing", "bug", "other"]`, "    urgent: bool", "", "",
    "completion = client.chat.completions.parse(", `    model="ignored",`,
    `    messages=[{"role": "user", "content": "${TICKET}"}],`, "    response_format=Ticket,", ")",
    "print(completion.choices[0].message.parsed)"]],
  responses: [["from openai import OpenAI"], [
    "response = client.responses.create(", `    model="ignored",`, `    input="Hello!",`, "    max_output_tokens=32,", ")",
    "print(response.output_text)"]],
  completions: [["from openai import OpenAI"], [
    "response = client.completions.create(", `    model="ignored",`, `    prompt="Once upon a time",`,
    "    max_tokens=16,", ")", "print(response.choices[0].text)"]],
};
// Each operation's JavaScript, inside `async function main()`.
const JAVASCRIPT = {
  chat: ["  const response = await client.chat.completions.create({",
    `    model: "ignored",`, `    messages: [{ role: "user", content: "Hello!" }],`, "  });",
    "  console.log(response.choices[0].message.content);"],
  structured: ["  const response = await client.chat.completions.create({",
    `    model: "ignored",`, `    messages: [{ role: "user", content: "${TICKET}" }],`,
    "    response_format: {", `      type: "json_schema",`, "      json_schema: {", `        name: "ticket",`,
    "        strict: true,", "        schema: {", `          type: "object",`, "          properties: {",
    `            label: { type: "string", enum: ["billing", "bug", "other"] },`, `            urgent: { type: "boolean" },`,
    "          },", `          required: ["label", "urgent"],`, "          additionalProperties: false,",
    "        },", "      },", "    },", "  });",
    "  console.log(JSON.parse(response.choices[0].message.content));"],
  responses: ["  const response = await client.responses.create({",
    `    model: "ignored",`, `    input: "Hello!",`, "    max_output_tokens: 32,", "  });", "  console.log(response.output_text);"],
  completions: ["  const response = await client.completions.create({",
    `    model: "ignored",`, `    prompt: "Once upon a time",`, "    max_tokens: 16,", "  });",
    "  console.log(response.choices[0].text);"],
};

// The OpenAI SDK base URL: the endpoint URL with its path replaced by /v1.
export function sdkBaseUrl(url) {
  try {
    const u = new URL(url);
    const path = u.pathname.replace(/\/chat\/completions\/?$/, "");
    return `${u.protocol}//${u.host}${path.endsWith("/v1") ? path : "/v1"}`;
  } catch {
    return url.replace(/\/v1\/chat\/completions$/, "/v1");
  }
}

// JSON laid out for reading: a value on one line when its line (indent, and `lead`
// characters of key before it) fits in 100 characters, else one member per line.
function layoutJson(value, indent = "", lead = 0) {
  const flat = (v) => Array.isArray(v) ? `[${v.map(flat).join(", ")}]`
    : v && typeof v === "object" ? `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${flat(x)}`).join(", ")}}`
      : JSON.stringify(v);
  const one = flat(value);
  if (!value || typeof value !== "object" || indent.length + lead + one.length <= 100) return one;
  const inner = `${indent}  `;
  const members = Array.isArray(value) ? value.map((x) => inner + layoutJson(x, inner))
    : Object.entries(value).map(([k, x]) => `${inner}${JSON.stringify(k)}: ${layoutJson(x, inner, k.length + 4)}`);
  const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  return `${open}\n${members.join(",\n")}\n${indent}${close}`;
}

function curlSample(endpoint, requiresAuth, body) {
  const compact = JSON.stringify(body);
  return [
    `curl -X POST ${endpoint} \\`,
    `  -H "Content-Type: application/json" \\`,
    ...(requiresAuth ? [`  -H "Authorization: Bearer YOUR_API_KEY" \\`] : []),
    `  -d '${compact.length <= 100 ? compact : layoutJson(body, "  ")}'`,
  ].join("\n");
}

function pythonSample(base, requiresAuth, [imports, call]) {
  const key = requiresAuth ? [`    api_key="YOUR_API_KEY",`] : [
    "    # auth_mode=none on this deployment; the OpenAI SDK still",
    "    # requires a non-empty value but the server ignores it.",
    `    api_key="not-required",`];
  return [...imports, "", "client = OpenAI(", `    base_url="${base}",`, ...key, ")", "", ...call].join("\n");
}

function javascriptSample(base, requiresAuth, call) {
  const key = requiresAuth ? [`  apiKey: "YOUR_API_KEY",`] : [
    "  // auth_mode=none on this deployment; the OpenAI SDK still",
    "  // requires a non-empty value but the server ignores it.",
    `  apiKey: "not-required",`];
  return ["// Requires ESM. Save as .mjs, or set \"type\": \"module\" in package.json.",
    `import OpenAI from "openai";`, "", "const client = new OpenAI({", `  baseURL: "${base}",`, ...key, "});", "",
    "async function main() {", ...call, "}", "", "main();"].join("\n");
}

export function buildQuickStartSample({ url, baseUrl, authMode, language, operation = "chat", menu = false }) {
  const requiresAuth = authMode === AUTH.FIXED_KEY;
  const base = baseUrl || sdkBaseUrl(url);
  let sample;
  if (language === "curl") {
    const endpoint = operation === "chat" || operation === "structured" ? url : `${base}/${operation}`;
    sample = curlSample(endpoint, requiresAuth, CURL_BODIES[operation]);
  } else if (language === "python") sample = pythonSample(base, requiresAuth, PYTHON[operation]);
  else sample = javascriptSample(base, requiresAuth, JAVASCRIPT[operation]);
  return menu ? sample.replace(/(model"?\s*[:=]\s*)"ignored"/g, `$1"${MENU_MODEL}"`) : sample;
}

function modelHint(d) {
  const target = d.target || {};
  if (target.kind !== TARGET.MODEL_MENU) return `The model field is ${IGNORED}: the deployment pins its target. `;
  const models = (target.models || []).join(", ");
  return `Set "model" to one of: ${models} (GET /v1/models lists them); without it, ` +
    `${target.defaultModel} answers. `;
}

class QuickStart extends HTMLElement {
  set deployment(d) { this._deployment = d; if (this.isConnected) this.render(); }

  connectedCallback() {
    if (!this.built) this.build();
    this.render();
  }

  build() {
    this.built = true;
    this.language = "curl";
    this.operation = "chat";
    const uid = Math.random().toString(36).slice(2, 8);
    this.langSelect = h("select", { id: `lang-${uid}`, onchange: () => { this.language = this.langSelect.value; this.render(); } },
      LANGUAGES.map(([v, l]) => h("option", { value: v }, l)));
    this.opSelect = h("select", { id: `op-${uid}`, onchange: () => { this.operation = this.opSelect.value; this.render(); } },
      OPERATIONS.map(([v, l]) => h("option", { value: v }, l)));
    this.code = h("pre", { class: "code", id: `code-${uid}`, tabindex: "0" });
    this.copy = copyButton("", "Copy", "Copy code sample");
    this.copy.setAttribute("for", this.code.id);
    this.toggle = h("button", { type: "button", class: "button small ghost", "aria-expanded": "true",
      onclick: () => this.setOpen(this.body.hidden) }, "Hide");
    this.body = h("div", { class: "stack" },
      h("div", { class: "row wrap" },
        h("div", { class: "field inline" }, h("label", { for: this.langSelect.id }, "Language"), this.langSelect),
        h("div", { class: "field inline" }, h("label", { for: this.opSelect.id }, "Operation"), this.opSelect),
        h("span", { class: "grow" }), this.copy),
      this.code,
      this.hint = h("p", { class: "hint" }, h("span", {}),
        h("a", { href: "https://docs.arkor.ai/studio/endpoints", target: "_blank", rel: "noopener" }, "Endpoints docs")));
    replace(this, h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", { class: "card-title" }, "Quick start"), this.toggle), this.body));
  }

  setOpen(open) {
    this.body.hidden = !open;
    this.toggle.textContent = open ? "Hide" : "Show";
    this.toggle.setAttribute("aria-expanded", String(open));
  }

  render() {
    const d = this._deployment;
    if (!d || !this.built) return;
    const sample = buildQuickStartSample({ url: d.url, baseUrl: d.baseUrl, authMode: d.authMode,
      language: this.language, operation: this.operation, menu: d.target?.kind === TARGET.MODEL_MENU });
    this.hint.firstChild.textContent = modelHint(d);
    this.code.textContent = sample;
    this.code.dataset.language = this.language;
    this.code.dataset.operation = this.operation;
    this.copy.text = sample;
  }
}

customElements.define("quick-start", QuickStart);
