// <response-format>: what shape the Playground's reply must take: free text, any JSON object,
// JSON that follows a schema (edited here, checked as JSON while typing) or one label of a
// list. `fields()` gives the /v1/inference/chat fields (`responseFormat` or
// `structuredOutputs`), or the problem to fix first.
import { h, replace } from "../dom.js";

export const FORMATS = [
  ["text", "Text"], ["json_object", "JSON object"], ["json_schema", "JSON schema"], ["choice", "Choice"],
];
const SCHEMA_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const EXAMPLE_SCHEMA = [
  "{",
  '  "type": "object",',
  '  "properties": {',
  '    "label": {"type": "string", "enum": ["billing", "bug", "other"]},',
  '    "urgent": {"type": "boolean"}',
  "  },",
  '  "required": ["label", "urgent"],',
  '  "additionalProperties": false',
  "}",
].join("\n");
const EXAMPLE_CHOICES = "billing\nbug\nother";

export function parseSchema(text) {
  let schema;
  try { schema = JSON.parse(text); } catch (err) { return { error: `The schema is not valid JSON: ${err.message}` }; }
  if (!schema || typeof schema !== "object" || Array.isArray(schema)) {
    return { error: "The schema must be a JSON object, such as {\"type\": \"object\", \"properties\": {…}}." };
  }
  return { schema };
}

export function parseChoices(text) {
  return [...new Set(text.split("\n").map((line) => line.trim()).filter(Boolean))];
}

// { fields } to merge into the request body, or { error, where } naming the control to fix.
export function formatFields({ format, schema = "", name = "", strict = false, choices = "" }) {
  if (format === "json_object") return { fields: { responseFormat: { type: "json_object" } } };
  if (format === "json_schema") {
    const parsed = parseSchema(schema);
    if (parsed.error) return { error: parsed.error, where: "schema" };
    if (!SCHEMA_NAME.test(name)) {
      return { error: "The schema name must be 1-64 letters, digits, _ or -.", where: "name" };
    }
    return { fields: { responseFormat: { type: "json_schema", json_schema: { name, schema: parsed.schema, strict } } } };
  }
  if (format === "choice") {
    const labels = parseChoices(choices);
    if (!labels.length) return { error: "Add at least one label, one per line.", where: "choices" };
    return { fields: { structuredOutputs: { choice: labels } } };
  }
  return { fields: {} };
}

class ResponseFormat extends HTMLElement {
  connectedCallback() {
    if (!this.built) this.build();
  }

  build() {
    this.built = true;
    const id = this.getAttribute("prefix") || `rf-${Math.random().toString(36).slice(2, 8)}`;
    const check = () => this.check();
    this.select = h("select", { id: `${id}-format`, onchange: () => this.sync() },
      FORMATS.map(([value, label]) => h("option", { value }, label)));
    this.problem = h("p", { id: `${id}-format-problem`, class: "hint error-text", "aria-live": "polite", hidden: true });
    this.schema = h("textarea", { id: `${id}-schema`, rows: 9, spellcheck: "false", class: "mono",
      "aria-describedby": this.problem.id, oninput: check });
    this.schema.value = EXAMPLE_SCHEMA;
    this.name = h("input", { id: `${id}-schema-name`, value: "answer", maxLength: 64, autocomplete: "off", oninput: check });
    this.strict = h("input", { id: `${id}-strict`, type: "checkbox", checked: true });
    this.choices = h("textarea", { id: `${id}-choices`, rows: 4, "aria-describedby": this.problem.id, oninput: check });
    this.choices.value = EXAMPLE_CHOICES;
    this.schemaBox = h("div", { class: "stack" },
      h("div", { class: "field" }, h("label", { for: this.schema.id }, "JSON schema"), this.schema),
      h("div", { class: "field" }, h("label", { for: this.name.id }, "Schema name"), this.name),
      h("label", { class: "radio" }, this.strict, "Strict (the reply validates against the schema)"));
    this.choicesBox = h("div", { class: "field" }, h("label", { for: this.choices.id }, "Labels, one per line"), this.choices,
      h("p", { class: "hint" }, "The reply is exactly one of these labels."));
    this.jsonHint = h("p", { class: "hint" }, "The reply is a JSON object; it always parses. Describe the keys you want in the prompt.");
    replace(this, h("div", { class: "stack" },
      h("div", { class: "field" }, h("label", { for: this.select.id }, "Response format"), this.select),
      this.jsonHint, this.schemaBox, this.choicesBox, this.problem));
    this.sync();
  }

  get format() { return this.select.value; }

  // Sets every control at once (the Playground replaying a stored run); missing fields keep theirs.
  load({ format, schema, name, strict, choices }) {
    if (!this.built) this.build();
    if (FORMATS.some(([value]) => value === format)) this.select.value = format;
    if (schema !== undefined) this.schema.value = schema;
    if (name !== undefined) this.name.value = name;
    if (strict !== undefined) this.strict.checked = strict;
    if (choices !== undefined) this.choices.value = choices;
    this.sync();
  }

  // True when the reply should be shown as JSON.
  get json() { return this.format === "json_object" || this.format === "json_schema"; }

  sync() {
    this.jsonHint.hidden = this.format !== "json_object";
    this.schemaBox.hidden = this.format !== "json_schema";
    this.choicesBox.hidden = this.format !== "choice";
    this.check();
  }

  fields() {
    return formatFields({ format: this.format, schema: this.schema.value, name: this.name.value.trim(),
      strict: this.strict.checked, choices: this.choices.value });
  }

  // Shows the current problem inline (or clears it); returns the result of fields().
  check() {
    const result = this.fields();
    const controls = { schema: this.schema, name: this.name, choices: this.choices };
    for (const [where, control] of Object.entries(controls)) control.setAttribute("aria-invalid", String(result.where === where));
    this.problem.hidden = !result.error;
    this.problem.textContent = result.error || "";
    return result;
  }

  focusProblem() {
    const result = this.check();
    ({ schema: this.schema, name: this.name, choices: this.choices })[result.where]?.focus();
  }
}

customElements.define("response-format", ResponseFormat);
