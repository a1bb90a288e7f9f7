// <tools-editor>: the functions the Playground's model may call (a JSON array of OpenAI
// function tools, checked while typing), the tool choice and whether a reply may hold several
// calls. `fields()` gives { tools, toolChoice[, parallelToolCalls] } for /v1/inference/chat,
// nothing when the list is empty, or the problem to fix first.
import { h, replace } from "../dom.js";

const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const CHOICES = [["auto", "auto: the model decides"], ["none", "none: never call"], ["required", "required: always call one"]];
const EXAMPLE_TOOLS = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city.",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
      required: ["city"],
      additionalProperties: false,
    },
  },
}];

function toolProblem(tool, n) {
  if (!tool || typeof tool !== "object" || Array.isArray(tool)) return `Tool ${n} must be an object.`;
  if (tool.type !== "function") return `Tool ${n}: "type" must be "function".`;
  const fn = tool.function;
  if (!fn || typeof fn !== "object") return `Tool ${n}: "function" must be an object with a name.`;
  if (typeof fn.name !== "string" || !FUNCTION_NAME.test(fn.name)) {
    return `Tool ${n}: "function.name" must be 1-64 letters, digits, _ or -.`;
  }
  if (fn.parameters !== undefined && (typeof fn.parameters !== "object" || Array.isArray(fn.parameters) || !fn.parameters)) {
    return `Tool ${n}: "function.parameters" must be a JSON schema object.`;
  }
  return null;
}

// { tools } (an empty list when the editor is blank), or { error }.
export function parseTools(text) {
  if (!text.trim()) return { tools: [] };
  let tools;
  try { tools = JSON.parse(text); } catch (err) { return { error: `The tools are not valid JSON: ${err.message}` }; }
  if (!Array.isArray(tools)) return { error: "The tools must be a JSON array of {\"type\": \"function\", \"function\": {…}}." };
  const problem = tools.map((tool, i) => toolProblem(tool, i + 1)).find(Boolean);
  if (problem) return { error: problem };
  const names = tools.map((t) => t.function.name);
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  return twice ? { error: `Two tools are named ${twice}.` } : { tools };
}

// The wire value of the tool-choice select: a mode, or "fn:<name>" for one function.
export function toolChoiceValue(value) {
  return value.startsWith("fn:") ? { type: "function", function: { name: value.slice(3) } } : value;
}

class ToolsEditor extends HTMLElement {
  connectedCallback() {
    if (!this.built) this.build();
  }

  build() {
    this.built = true;
    const id = this.getAttribute("prefix") || `te-${Math.random().toString(36).slice(2, 8)}`;
    this.problem = h("p", { id: `${id}-tools-problem`, class: "hint error-text", "aria-live": "polite", hidden: true });
    this.text = h("textarea", { id: `${id}-tools`, rows: 8, spellcheck: "false", class: "mono", placeholder: "[]",
      "aria-describedby": this.problem.id, oninput: () => this.check() });
    this.choice = h("select", { id: `${id}-tool-choice` });
    this.parallel = h("input", { id: `${id}-parallel`, type: "checkbox", checked: true });
    this.count = h("span", { class: "muted" });
    replace(this, h("details", { class: "advanced" },
      h("summary", {}, "Tools ", this.count),
      h("div", { class: "stack" },
        h("div", { class: "field" }, h("label", { for: this.text.id }, "Tools (JSON array of functions)"), this.text,
          h("button", { type: "button", class: "link-button", onclick: () => this.useExample() }, "Insert an example tool")),
        this.problem,
        h("div", { class: "field" }, h("label", { for: this.choice.id }, "Tool choice"), this.choice),
        h("label", { class: "radio" }, this.parallel, "Parallel calls (several calls in one reply)"),
        h("p", { class: "hint" }, "When the model calls a tool, the call is shown; type the tool's result as the next message."))));
    this.check();
  }

  useExample() {
    this.text.value = JSON.stringify(EXAMPLE_TOOLS, null, 2);
    this.querySelector("details").open = true;
    this.check();
  }

  // Sets the tools, the choice ("auto", "none", "required" or "fn:<name>") and parallel calls
  // at once (the Playground replaying a stored run).
  load({ tools, choice, parallel }) {
    if (!this.built) this.build();
    this.text.value = tools.length ? JSON.stringify(tools, null, 2) : "";
    this.check();
    if ([...this.choice.options].some((o) => o.value === choice)) this.choice.value = choice;
    this.parallel.checked = parallel;
    if (tools.length) this.querySelector("details").open = true;
  }

  fields() {
    const parsed = parseTools(this.text.value);
    if (parsed.error) return parsed;
    if (!parsed.tools.length) return { fields: {} };
    const fields = { tools: parsed.tools, toolChoice: toolChoiceValue(this.choice.value) };
    return { fields: this.parallel.checked ? fields : { ...fields, parallelToolCalls: false } };
  }

  // Shows the current problem inline and refreshes the choices; returns fields().
  check() {
    const parsed = parseTools(this.text.value);
    this.text.setAttribute("aria-invalid", String(Boolean(parsed.error)));
    this.problem.hidden = !parsed.error;
    this.problem.textContent = parsed.error || "";
    if (!parsed.error) this.fillChoices(parsed.tools.map((t) => t.function.name));
    return this.fields();
  }

  fillChoices(names) {
    const wanted = this.choice.value || "auto";
    replace(this.choice, CHOICES.map(([value, label]) => h("option", { value }, label)),
      names.map((name) => h("option", { value: `fn:${name}` }, `${name}: always call this one`)));
    this.choice.value = [...this.choice.options].some((o) => o.value === wanted) ? wanted : "auto";
    this.choice.disabled = names.length === 0;
    this.count.textContent = names.length ? `(${names.length})` : "";
  }

  focusProblem() {
    this.querySelector("details").open = true;
    this.text.focus();
  }
}

customElements.define("tools-editor", ToolsEditor);
