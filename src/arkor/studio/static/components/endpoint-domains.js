// <endpoint-domains deployment-id="…">: the endpoint's custom domains, in its Settings. Each
// domain shows its status (pending until verified), when it was last checked and what that
// check found, and the TXT record to create (name and value, each copyable), with Verify (look
// the record up now) and Remove; a form adds one. Only a verified domain is served.
import { api } from "../api.js";
import { errorBox, h, replace } from "../dom.js";
import { relativeTime } from "../format.js";
import { copyButton, statusBadge } from "./widgets.js";
import { DOMAIN_STATUS } from "../contract.js";

class EndpointDomains extends HTMLElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    this.domains = null;
    this.busy = false;
    this.input = h("input", { id: `domain-${Math.random().toString(36).slice(2, 8)}`, placeholder: "api.example.com",
      autocomplete: "off", spellcheck: false, "aria-label": "Custom domain", oninput: () => this.render() });
    this.status = h("div", { role: "status" });
    this.list = h("div", { class: "stack" });
    this.form = h("form", { class: "row", onsubmit: (event) => { event.preventDefault(); this.add(); } }, this.input,
      h("button", { type: "submit", class: "button" }, "Add domain"));
    replace(this, h("div", { class: "stack" },
      h("div", {}, h("strong", {}, "Custom domains"),
        h("p", { class: "hint" }, "Serve this endpoint at a domain of yours. Point the domain at this server, create the "
          + "TXT record shown, then Verify; until then requests for it are refused.")),
      this.list, this.form, this.status));
    this.load();
  }

  get base() { return `/api/deployments/${encodeURIComponent(this.getAttribute("deployment-id") ?? "")}/domains`; }

  async load() {
    try {
      this.domains = (await api.get(this.base)).domains;
    } catch (err) {
      replace(this.status, errorBox(err.message));
    }
    this.render();
  }

  render() {
    this.form.querySelector("button").disabled = this.busy || !this.input.value.trim();
    if (!this.domains) return;
    replace(this.list, this.domains.length ? this.domains.map((d) => this.row(d))
      : h("p", { class: "muted" }, "No custom domains yet."));
  }

  row(d) {
    const verified = d.status === DOMAIN_STATUS.VERIFIED;
    const checked = d.lastCheckedAt ? `checked ${relativeTime(d.lastCheckedAt)}` : "not checked yet";
    return h("div", { class: "setting column custom-domain", "data-domain": d.domain },
      h("div", { class: "row wrap" },
        h("code", { class: "grow strong" }, d.domain), statusBadge(d.status),
        h("span", { class: "muted", title: d.lastCheckedAt || "" }, checked),
        h("button", { type: "button", class: "button small", disabled: this.busy,
          "aria-label": `Verify ${d.domain}`, onclick: () => this.verify(d) }, "Verify"),
        h("button", { type: "button", class: "button small danger", disabled: this.busy,
          "aria-label": `Remove ${d.domain}`, onclick: () => this.remove(d) }, "Remove")),
      d.lastError ? h("p", { class: "hint domain-error" }, d.lastError) : null,
      verified ? null : h("div", { class: "stack" },
        h("p", { class: "hint" }, "Create this TXT record at your DNS provider:"),
        h("div", { class: "row wrap" }, h("span", { class: "muted" }, "Name"),
          h("code", { class: "grow domain-record" }, d.challengeRecord), copyButton(d.challengeRecord, "Copy", "Copy record name")),
        h("div", { class: "row wrap" }, h("span", { class: "muted" }, "Value"),
          h("code", { class: "grow domain-value" }, d.challengeValue), copyButton(d.challengeValue, "Copy", "Copy record value"))));
  }

  async act(work) {
    this.busy = true;
    replace(this.status);
    this.render();
    try {
      await work();
    } catch (err) {
      replace(this.status, errorBox(err.message));
    } finally {
      this.busy = false;
      this.render();
    }
  }

  add() {
    const domain = this.input.value.trim();
    return this.act(async () => {
      const added = (await api.post(this.base, { domain })).domain;
      this.domains = [...this.domains.filter((d) => d.domain !== added.domain), added];
      this.input.value = "";
    });
  }

  verify(d) {
    return this.act(async () => {
      try {
        const checked = (await api.post(`${this.base}/${encodeURIComponent(d.domain)}/verify`, {})).domain;
        this.domains = this.domains.map((x) => (x.domain === checked.domain ? checked : x));
      } catch (err) {
        await this.reload(); // a failed lookup is recorded on the domain as well
        throw err;
      }
    });
  }

  remove(d) {
    if (!confirm(`Remove ${d.domain}? Requests for it are refused from then on.`)) return null;
    return this.act(async () => {
      await api.del(`${this.base}/${encodeURIComponent(d.domain)}`);
      this.domains = this.domains.filter((x) => x.domain !== d.domain);
    });
  }

  async reload() {
    try {
      this.domains = (await api.get(this.base)).domains;
    } catch {
      // the error already shown says more
    }
  }
}

customElements.define("endpoint-domains", EndpointDomains);
