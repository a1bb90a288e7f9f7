// Endpoint detail (#/endpoints/<id>[?tab=runs[&run=<runId>]|?tab=usage]): the Overview tab has
// the URL, Quick start, settings (enable, auth, target, retention), API keys (issue once,
// revoke) and delete; the Runs tab the stored runs (<run-list>) and one run opened
// (<run-viewer>); the Usage tab the metered calls (<endpoint-usage>).
import { api } from "../api.js";
import { card, errorBox, field, h, replace } from "../dom.js";
import { relativeTime, targetSummary } from "../format.js";
import { copyButton, statusBadge } from "../components/widgets.js";
import { AUTH } from "../contract.js";

const LEAVE_ISSUING = "An API key is being issued. Leaving now will lose the one-time secret. Continue anyway?";
const LEAVE_UNSAVED = "The just-issued API key is shown on screen but you haven't confirmed you saved it. Leaving now will discard the only copy. Continue anyway?";

const TABS = [["overview", "Overview"], ["runs", "Runs"], ["usage", "Usage"]];

export function mount(main, { param: id, query }) {
  const base = `/api/deployments/${encodeURIComponent(id)}`;
  let deployment = null;
  let keys = null;
  let keysError = null;
  let issuing = false;
  let plaintext = null;
  let editingTarget = false;
  const head = h("div", { class: "page-head" });
  const mutationError = h("div");
  const urlCard = h("div");
  const quickStart = h("quick-start");
  const settings = h("div");
  const keysBox = h("div");
  const label = h("input", { id: "key-label", maxLength: 80, placeholder: "Label (e.g. production)", autocomplete: "off",
    "aria-label": "API key label", oninput: () => renderKeys() });
  // The form stays in the page while the keys redraw around it: an input taken out of the
  // document loses its focus, and the next keystrokes went nowhere.
  const issueButton = h("button", { type: "submit", class: "button primary" }, "Issue key");
  const authNote = h("div");
  const keysCallout = h("div");
  const keysList = h("div");
  replace(keysBox, authNote, h("form", { class: "row", onsubmit: issue }, label, issueButton), keysCallout, keysList);
  const picker = h("target-picker");
  const retention = h("retention-fields");
  const tabBar = h("div", { class: "subtabs", role: "tablist", "aria-label": "Endpoint" });
  const overview = h("div", { role: "tabpanel", id: "ep-panel-overview" });
  const runList = h("run-list");
  const runViewer = h("run-viewer");
  const runsPanel = h("div", { role: "tabpanel", id: "ep-panel-runs" }, runList, runViewer);
  const usage = h("endpoint-usage");
  const usagePanel = h("div", { role: "tabpanel", id: "ep-panel-usage", hidden: true }, usage);
  let tab = TABS.some(([value]) => value === query?.get("tab")) ? query.get("tab") : "overview";
  let openRun = tab === "runs" ? query.get("run") : null;

  // The tab (and the run open in it) live in the address, without remounting the page.
  function showTab(next, runId = null) {
    tab = next;
    openRun = next === "runs" ? runId : null;
    const params = new URLSearchParams();
    if (tab !== "overview") params.set("tab", tab);
    if (openRun) params.set("run", openRun);
    const search = params.toString();
    history.replaceState(null, "", `#/endpoints/${encodeURIComponent(id)}${search ? `?${search}` : ""}`);
    replace(tabBar, TABS.map(([value, name]) => h("button", { type: "button", role: "tab", id: `ep-tab-${value}`,
      "aria-selected": String(tab === value), "aria-controls": `ep-panel-${value}`, onclick: () => showTab(value) }, name)));
    overview.hidden = tab !== "overview";
    runsPanel.hidden = tab !== "runs";
    usagePanel.hidden = tab !== "usage";
    runList.hidden = Boolean(openRun);
    runViewer.hidden = !openRun;
    if (tab === "runs" && !openRun && deployment) runList.start();
    else runList.stop();
    if (openRun) runViewer.show(id, openRun);
    if (tab === "usage" && deployment) usage.start();
    else usage.stop();
  }

  runList.addEventListener("run-open", (event) => showTab("runs", event.detail.runId));
  runList.addEventListener("retention-edit", () => {
    showTab("overview");
    retention.scrollIntoView({ block: "center" });
    retention.querySelector("select")?.focus();
  });
  runViewer.addEventListener("run-close", () => showTab("runs"));

  async function mutate(fn) {
    replace(mutationError);
    try {
      await fn();
      return true;
    } catch (err) {
      replace(mutationError, errorBox(err.message));
      return false;
    }
  }

  async function patch(body) {
    await mutate(async () => { deployment = (await api.patch(base, body)).deployment; });
    render();
  }

  async function remove() {
    let question = `Delete endpoint ${deployment.slug}? Its URL stops answering and its keys are deleted.`;
    if (plaintext) question += " The just-issued API key plaintext on screen will also be lost; copy it first if you still need it.";
    if (!confirm(question)) return;
    if (await mutate(() => api.del(base))) {
      plaintext = null;
      location.hash = "#/endpoints";
    }
  }

  async function issue(event) {
    event.preventDefault();
    issuing = true;
    renderKeys();
    try {
      const { key } = await api.post(`${base}/keys`, { label: label.value.trim() });
      plaintext = key.plaintext;
      label.value = "";
      replace(mutationError);
    } catch (err) {
      replace(mutationError, errorBox(err.message));
    } finally {
      issuing = false;
    }
    await loadKeys();
  }

  async function revoke(key) {
    if (!confirm("Revoke this key?")) return;
    if (await mutate(() => api.del(`${base}/keys/${encodeURIComponent(key.id)}`))) {
      key.enabled = false;
      renderKeys();
      loadKeys();
    }
  }

  function renderKeys() {
    const callout = plaintext ? h("div", { class: "callout amber", role: "status" },
      h("strong", {}, "Copy this key now. It cannot be shown again."),
      h("div", { class: "row wrap" }, h("code", { class: "secret", id: "key-plaintext" }, plaintext), copyButton(plaintext, "Copy", "Copy API key")),
      h("button", { type: "button", class: "button small", onclick: () => { plaintext = null; renderKeys(); } }, "I've saved it")) : null;
    const list = keysError ? errorBox(`Failed to load keys: ${keysError}`)
      : !keys ? h("p", { class: "muted" }, "Loading…")
        : !keys.length ? h("p", { class: "muted" }, "No keys yet.")
          : h("ul", { class: "list" }, keys.map((key) => h("li", { class: "list-row" },
            h("span", { class: `grow ${key.enabled ? "" : "revoked"}` }, h("span", { class: "strong" }, key.label),
              h("span", { class: "mono muted" }, ` ${key.prefix}…`)),
            h("span", { class: "muted", title: key.lastUsedAt || "" }, key.lastUsedAt ? `last used ${relativeTime(key.lastUsedAt)}` : "never used"),
            h("key-limits", { "deployment-id": id, apiKey: key }),
            key.enabled ? h("button", { type: "button", class: "button small danger", onclick: () => revoke(key) }, "Revoke") : statusBadge("revoked"))));
    const valid = label.value.trim().length >= 1 && label.value.trim().length <= 80;
    replace(authNote, deployment?.authMode === AUTH.NONE ? h("p", { class: "note" }, "Auth is set to none; keys are not enforced.") : null);
    issueButton.disabled = issuing || !valid || Boolean(plaintext);
    issueButton.textContent = issuing ? "Issuing…" : "Issue key";
    replace(keysCallout, callout);
    replace(keysList, list);
  }

  function renderSettings() {
    const d = deployment;
    const auth = h("select", { id: "ep-auth-mode", onchange: () => patch({ authMode: auth.value }) },
      h("option", { value: AUTH.FIXED_KEY }, "Fixed API key"), h("option", { value: AUTH.NONE }, "No auth (public)"));
    auth.value = d.authMode;
    retention.value = { runRetentionMode: d.runRetentionMode, runRetentionDays: d.runRetentionDays };
    const saveRetention = async () => {
      const value = retention.value;
      if (!value) { replace(mutationError, errorBox("Run retention days must be a whole number from 1 to 3650.")); return; }
      await patch(value);
    };
    const saveTarget = async () => {
      const target = picker.value;
      if (!target) { replace(mutationError, errorBox("Fill in the target details")); return; }
      editingTarget = false;
      await patch({ target });
    };
    replace(settings,
      h("div", { class: "setting" }, h("div", { class: "grow" }, h("strong", {}, "Status "), statusBadge(d.enabled ? "enabled" : "disabled"),
        h("p", { class: "hint" }, "A disabled endpoint answers 404; its slug stays reserved.")),
      h("button", { type: "button", class: "button", onclick: () => patch({ enabled: !d.enabled }) }, d.enabled ? "Disable" : "Enable")),
      h("div", { class: "setting" }, field("Auth mode", auth, "Switching back to Fixed API key makes existing keys authoritative again.")),
      h("div", { class: "setting column" },
        h("div", { class: "row" }, h("div", { class: "grow" }, h("strong", {}, "Target "), h("span", {}, targetSummary(d.target))),
          editingTarget ? null : h("button", { type: "button", class: "button", onclick: () => { editingTarget = true; picker.target = d.target; renderSettings(); } }, "Change target")),
        editingTarget ? h("div", { class: "stack" }, picker, h("div", { class: "row" },
          h("button", { type: "button", class: "button primary", onclick: saveTarget }, "Save target"),
          h("button", { type: "button", class: "button ghost", onclick: () => { editingTarget = false; renderSettings(); } }, "Cancel"))) : null),
      h("div", { class: "setting column" }, retention, h("div", { class: "row" },
        h("button", { type: "button", class: "button", onclick: saveRetention }, "Save retention"))),
      h("endpoint-domains", { class: "setting column", "deployment-id": id }),
      h("div", { class: "setting" }, h("div", { class: "grow" }, h("strong", {}, "Expires "),
        h("span", { id: "ep-expires", title: d.expiresAt || "" }, d.expiresAt ? new Date(d.expiresAt).toLocaleString() : "never"),
        h("p", { class: "hint" }, "After this time the endpoint answers 404 and is deleted with its keys and runs."))));
  }

  function render() {
    if (!deployment) return;
    const d = deployment;
    replace(head, h("div", { class: "row wrap" },
      h("div", { class: "grow" }, h("h1", {}, d.slug), h("p", { class: "muted" }, targetSummary(d.target))),
      statusBadge(d.enabled ? "enabled" : "disabled"),
      h("button", { type: "button", class: "button danger", onclick: remove }, "Delete")));
    replace(urlCard, card("Endpoint URL",
      h("div", { class: "row wrap url-row" }, h("code", { class: "url", id: "endpoint-url" }, d.url), copyButton(d.url, "Copy", "Copy endpoint URL")),
      h("p", { class: "hint" }, "Paste this into cURL or any HTTP client. OpenAI SDKs take the base URL instead: ",
        h("code", {}, d.baseUrl), ".")));
    quickStart.deployment = d;
    runList.deployment = d;
    usage.deployment = d;
    renderSettings();
    renderKeys();
  }

  async function loadKeys() {
    try {
      keys = (await api.get(`${base}/keys`)).keys;
      keysError = null;
    } catch (err) {
      keysError = err.message;
    }
    renderKeys();
  }

  async function load() {
    try {
      deployment = (await api.get(base)).deployment;
    } catch (err) {
      replace(main, h("p", {}, h("a", { href: "#/endpoints" }, "← Back to endpoints")), errorBox(err.message));
      return;
    }
    const first = !runList.deployment;
    render();
    if (first) showTab(tab, openRun);
  }

  overview.append(urlCard, quickStart,
    h("div", { class: "columns" }, card("Settings", settings), card("API keys", keysBox)));
  overview.append(h("endpoint-limits", { "deployment-id": id }));
  main.append(
    h("p", {}, h("a", { href: "#/endpoints" }, "← Back to endpoints")),
    head, mutationError, tabBar, overview, runsPanel, usagePanel);
  runsPanel.hidden = true;
  load();
  loadKeys();
  return {
    destroy: () => { runList.stop(); usage.stop(); },
    wouldLoseData: () => issuing || Boolean(plaintext),
    confirmLeave: () => {
      if (issuing) return confirm(LEAVE_ISSUING);
      if (plaintext) return confirm(LEAVE_UNSAVED);
      return true;
    },
  };
}
