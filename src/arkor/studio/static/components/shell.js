// The header widgets: <theme-toggle> and <identity-chip>.
import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { hostOf } from "../format.js";

const THEME_KEY = "arkor-studio-theme";

class ThemeToggle extends HTMLElement {
  connectedCallback() {
    this.button = h("button", { type: "button", class: "icon-button", onclick: () => this.flip() });
    replace(this, this.button);
    this.render();
  }

  get theme() { return document.documentElement.dataset.theme === "dark" ? "dark" : "light"; }

  flip() {
    const next = this.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem(THEME_KEY, next);
    this.render();
  }

  render() {
    const next = this.theme === "dark" ? "light" : "dark";
    this.button.textContent = this.theme === "dark" ? "☀" : "☾";
    this.button.setAttribute("aria-label", `Switch to ${next} theme`);
    this.button.title = `Switch to ${next} theme`;
  }
}

class IdentityChip extends HTMLElement {
  connectedCallback() {
    this.className = "chip";
    this.textContent = "connecting…";
    this.load();
  }

  async load() {
    try {
      const creds = await api.get("/api/credentials");
      const me = await api.get("/api/me").catch(() => null);
      const who = me ? (me.user.anonymous ? "anonymous" : me.user.email || me.user.name || "signed in")
        : creds.mode === "oauth" ? "oauth" : "anonymous";
      const role = me?.orgs.find((org) => org.slug === creds.orgSlug)?.role;
      const scope = creds.projectSlug ? `${creds.orgSlug} / ${creds.projectSlug}` : creds.orgSlug;
      replace(this, h("span", { class: "dot ok", "aria-hidden": "true" }),
        `${who} · ${hostOf(creds.baseUrl)}${role ? ` · ${role}` : ""}`);
      this.title = `Signed in as ${who} to ${creds.baseUrl}${scope ? `, scope ${scope}` : ""}`
        + (role ? `; your role in org ${creds.orgSlug}: ${role}` : "");
    } catch (err) {
      replace(this, h("span", { class: "dot bad", "aria-hidden": "true" }), "error");
      this.title = err.message;
      setTimeout(() => this.load(), 5000);
    }
  }
}

customElements.define("theme-toggle", ThemeToggle);
customElements.define("identity-chip", IdentityChip);
