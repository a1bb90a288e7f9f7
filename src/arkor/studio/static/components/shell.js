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

// `command` spans of a message as <code>, the rest as text.
function withCode(text) {
  return text.split("`").map((part, i) => (i % 2 ? h("code", {}, part) : part));
}

// The notice under the header while nobody is signed in, or the token was refused (401 from
// /api/credentials or /api/me): the message names the `arkor login` to run. The chip keeps
// checking, so the notice goes away by itself once the user has signed in in a terminal.
function signInNotice(message) {
  const notice = document.getElementById("sign-in-notice");
  if (!notice) return;
  notice.hidden = !message;
  replace(notice, message ? withCode(message) : null);
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
      const me = await api.get("/api/me");
      const who = me.user.anonymous ? "anonymous" : me.user.email || me.user.name || "signed in";
      const role = me.orgs.find((org) => org.slug === creds.orgSlug)?.role;
      const scope = creds.projectSlug ? `${creds.orgSlug} / ${creds.projectSlug}` : creds.orgSlug;
      replace(this, h("span", { class: "dot ok", "aria-hidden": "true" }),
        `${who} · ${hostOf(creds.baseUrl)}${role ? ` · ${role}` : ""}`);
      this.title = `Signed in as ${who} to ${creds.baseUrl}${scope ? `, scope ${scope}` : ""}`
        + (role ? `; your role in org ${creds.orgSlug}: ${role}` : "");
      signInNotice(null);
    } catch (err) {
      const signIn = err.status === 401;
      replace(this, h("span", { class: "dot bad", "aria-hidden": "true" }), signIn ? "not signed in" : "error");
      this.title = err.message;
      signInNotice(signIn ? err.message : null);
      setTimeout(() => this.load(), 5000);
    }
  }
}

customElements.define("theme-toggle", ThemeToggle);
customElements.define("identity-chip", IdentityChip);
