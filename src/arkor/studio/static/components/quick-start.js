// <quick-start>: copy-pasteable samples for a deployment (contract §4.6), using the
// deployment's real URLs; the auth lines follow its auth mode.
import { h, replace } from "../dom.js";
import { copyButton } from "./widgets.js";

export const LANGUAGES = [
  ["curl", "cURL"], ["python", "Python (OpenAI SDK)"], ["javascript", "JavaScript (OpenAI SDK)"],
];
export const OPERATIONS = [["chat", "POST /v1/chat/completions"]];

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

export function buildQuickStartSample({ url, baseUrl, authMode, language }) {
  const requiresAuth = authMode === "fixed_api_key";
  const base = baseUrl || sdkBaseUrl(url);
  if (language === "curl") {
    return [
      `curl -X POST ${url} \\`,
      `  -H "Content-Type: application/json" \\`,
      ...(requiresAuth ? [`  -H "Authorization: Bearer YOUR_API_KEY" \\`] : []),
      `  -d '{"model":"ignored","messages":[{"role":"user","content":"Hello!"}]}'`,
    ].join("\n");
  }
  if (language === "python") {
    const key = requiresAuth ? [`    api_key="YOUR_API_KEY",`] : [
      "    # auth_mode=none on this deployment; the OpenAI SDK still",
      "    # requires a non-empty value but the server ignores it.",
      `    api_key="not-required",`];
    return ["from openai import OpenAI", "", "client = OpenAI(", `    base_url="${base}",`, ...key, ")", "",
      "response = client.chat.completions.create(", `    model="ignored",`,
      `    messages=[{"role": "user", "content": "Hello!"}],`, ")",
      "print(response.choices[0].message.content)"].join("\n");
  }
  const key = requiresAuth ? [`  apiKey: "YOUR_API_KEY",`] : [
    "  // auth_mode=none on this deployment; the OpenAI SDK still",
    "  // requires a non-empty value but the server ignores it.",
    `  apiKey: "not-required",`];
  return ["// Requires ESM. Save as .mjs, or set \"type\": \"module\" in package.json.",
    `import OpenAI from "openai";`, "", "const client = new OpenAI({", `  baseURL: "${base}",`, ...key, "});", "",
    "async function main() {", "  const response = await client.chat.completions.create({",
    `    model: "ignored",`, `    messages: [{ role: "user", content: "Hello!" }],`, "  });",
    "  console.log(response.choices[0].message.content);", "}", "", "main();"].join("\n");
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
    const uid = Math.random().toString(36).slice(2, 8);
    this.langSelect = h("select", { id: `lang-${uid}`, onchange: () => { this.language = this.langSelect.value; this.render(); } },
      LANGUAGES.map(([v, l]) => h("option", { value: v }, l)));
    this.opSelect = h("select", { id: `op-${uid}` }, OPERATIONS.map(([v, l]) => h("option", { value: v }, l)));
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
      h("p", { class: "hint" }, "The model field is ignored: the deployment pins its target. ",
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
    const sample = buildQuickStartSample({ url: d.url, baseUrl: d.baseUrl, authMode: d.authMode, language: this.language });
    this.code.textContent = sample;
    this.code.dataset.language = this.language;
    this.copy.text = sample;
  }
}

customElements.define("quick-start", QuickStart);
