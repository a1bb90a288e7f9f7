// Endpoints (#/endpoints): deployments of this project, refreshed every 10 s while the tab
// is visible, and the inline "New endpoint" form (prefilled by ?new=1&job=<id>[&step=<n>]).
import { api, poll } from "../api.js";
import { card, emptyState, errorBox, field, h, refresh, replace } from "../dom.js";
import { hostOf, targetSummary } from "../format.js";
import { statusBadge } from "../components/widgets.js";
import { ADAPTER, AUTH, TARGET } from "../contract.js";

const SLUG_PATTERN = "[a-z0-9][a-z0-9\\-]*[a-z0-9]";

function slugPath(url) {
  try { return new URL(url).pathname.replace(/\/chat\/completions$/, ""); } catch { return ""; }
}

function createForm({ onCreated, onCancel, prefill }) {
  const slug = h("input", { id: "ep-slug", required: true, minLength: 2, maxLength: 50, pattern: SLUG_PATTERN,
    placeholder: "mymodel", autocomplete: "off", spellcheck: "false",
    oninput: () => { const at = slug.selectionStart; slug.value = slug.value.toLowerCase(); slug.setSelectionRange(at, at); } });
  const picker = h("target-picker");
  if (prefill) picker.target = prefill;
  const auth = h("select", { id: "ep-auth" }, h("option", { value: AUTH.FIXED_KEY }, "Fixed API key"), h("option", { value: AUTH.NONE }, "No auth (public)"));
  const retention = h("retention-fields", { "allow-default": true });
  const error = h("div");
  const submit = h("button", { type: "submit", class: "button primary" }, "Create endpoint");

  async function create(event) {
    event.preventDefault();
    replace(error);
    if (!picker.loaded) {  // the job list is still on its way: wait for it, then read the choice
      await new Promise((resolve) => picker.addEventListener("loaded", resolve, { once: true }));
    }
    const target = picker.value;
    if (!target) { replace(error, errorBox("Fill in the target details")); return; }
    const keep = retention.value;
    if (!keep) { replace(error, errorBox("Run retention days must be a whole number from 1 to 3650.")); return; }
    submit.disabled = true;
    submit.textContent = "Creating…";
    try {
      const { deployment } = await api.post("/api/deployments", { slug: slug.value.trim(), target, authMode: auth.value, ...keep });
      onCreated(deployment);
    } catch (err) {
      replace(error, errorBox(err.message));
    } finally {
      submit.disabled = false;
      submit.textContent = "Create endpoint";
    }
  }

  return h("form", { class: "stack", onsubmit: create, "aria-label": "New endpoint" },
    field("Slug", slug, "2-50 characters: lowercase letters, digits and hyphens. It names the URL and cannot change."),
    picker,
    h("div", { class: "grid-2" }, field("Auth", auth, "Public means anyone with the URL can call it."), retention),
    error,
    h("div", { class: "row" }, submit, h("button", { type: "button", class: "button ghost", onclick: onCancel }, "Cancel")));
}

export function mount(main, { query }) {
  let formOpen = false;
  const listBox = h("div");
  const formBox = h("div");
  const toggle = h("button", { type: "button", class: "button primary", "aria-expanded": "false", onclick: () => setForm(!formOpen) }, "New endpoint");

  function prefillFromQuery() {
    const job = query.get("job");
    if (!job) return null;
    const step = query.get("step");
    return { kind: TARGET.ADAPTER, adapter: step !== null ? { kind: ADAPTER.CHECKPOINT, jobId: job, step: Number(step) } : { kind: ADAPTER.FINAL, jobId: job } };
  }

  function setForm(open, prefill) {
    formOpen = open;
    toggle.textContent = open ? "Cancel" : "New endpoint";
    toggle.setAttribute("aria-expanded", String(open));
    replace(formBox, open ? card("New endpoint", createForm({
      prefill,
      onCancel: () => setForm(false),
      onCreated: () => { setForm(false); load(); },
    })) : null);
    if (open) formBox.querySelector("#ep-slug")?.focus();
  }

  async function load() {
    let data;
    try {
      data = await api.get("/api/deployments");
    } catch (err) {
      replace(listBox, errorBox(`Failed to load endpoints: ${err.message}`));
      return;
    }
    if (data.scopeMissing) {
      replace(listBox, emptyState("Workspace not scoped to a project yet",
        "This directory has no usable .arkor/state.json. Creating your first endpoint (or starting a training run) sets one up: a project named after this directory in your org (anonymous, or signed in with a token). OAuth users restore the file by hand, or run `arkor login` with the account that owns the project."));
      return;
    }
    if (!data.deployments.length) {
      replace(listBox, emptyState("No endpoints yet", "Create one to expose a model at its own OpenAI-compatible URL (…/d/<slug>/v1/chat/completions)."));
      return;
    }
    refresh(listBox, h("ul", { class: "list" }, data.deployments.map((d) => h("li", {},
      h("a", { class: "list-row", href: `#/endpoints/${encodeURIComponent(d.id)}` },
        h("span", { class: "grow" },
          h("span", { class: "strong" }, d.slug), h("span", { class: "muted" }, ` ${hostOf(d.url)}${slugPath(d.url)}`),
          h("span", { class: "sub muted" }, `${targetSummary(d.target)} · auth: ${d.authMode}`)),
        statusBadge(d.enabled ? "enabled" : "disabled"))))));
  }

  main.append(
    h("div", { class: "page-head row wrap" },
      h("div", { class: "grow" }, h("h1", {}, "Endpoints"),
        h("p", { class: "muted" }, "Publish a trained adapter or a base model at its own OpenAI-compatible URL, with API keys.")),
      toggle),
    formBox,
    card("Deployments", h("p", { class: "muted" }, "Click a row to manage API keys and toggle settings."), listBox));
  replace(listBox, h("p", { class: "muted" }, "Loading…"));
  if (query.get("new")) setForm(true, prefillFromQuery());
  load();
  const stop = poll(load, 10000);
  return { destroy: stop };
}
