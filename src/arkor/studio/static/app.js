// The Studio shell: hash routes to one module per page, and the header widgets.
import "./components/shell.js";
import "./components/widgets.js";
import "./components/loss-chart.js";
import "./components/job-picker.js";
import "./components/quick-start.js";
import "./components/retention-fields.js";
import "./components/response-format.js";
import "./components/tools-editor.js";
import "./components/run-list.js";
import "./components/run-viewer.js";
import "./components/endpoint-usage.js";
import "./components/endpoint-limits.js";
import "./components/endpoint-domains.js";
import * as overview from "./pages/overview.js";
import * as jobs from "./pages/jobs.js";
import * as jobDetail from "./pages/job-detail.js";
import * as playground from "./pages/playground.js";
import * as endpoints from "./pages/endpoints.js";
import * as endpointDetail from "./pages/endpoint-detail.js";
import * as patterns from "./pages/patterns.js";

const ROUTES = [
  [/^\/jobs\/(.+)$/, jobDetail, "jobs"],
  [/^\/jobs\/?$/, jobs, "jobs"],
  [/^\/playground\/?$/, playground, "playground"],
  [/^\/endpoints\/(.+)$/, endpointDetail, "endpoints"],
  [/^\/endpoints\/?$/, endpoints, "endpoints"],
  [/^\/patterns\/?$/, patterns, null],
  [/.*/, overview, "overview"],
];

const main = document.getElementById("main");
let current = null;
let currentHash = location.hash;
let restoring = false;

function parse(hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { path, query: new URLSearchParams(query) };
}

function route() {
  if (restoring) { restoring = false; return; }
  if (current?.confirmLeave && !current.confirmLeave()) {
    restoring = true;
    location.hash = currentHash;
    return;
  }
  current?.destroy?.();
  currentHash = location.hash;
  const { path, query } = parse(location.hash);
  const [pattern, page, tab] = ROUTES.find(([re]) => re.test(path));
  const match = path.match(pattern);
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.tab === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  document.title = "Arkor Studio";
  const param = match[1] ? decodeURIComponent(match[1]) : undefined;
  current = page.mount(main, { param, query }) || {};
  window.scrollTo(0, 0);
}

window.addEventListener("hashchange", route);
window.addEventListener("beforeunload", (event) => {
  if (current?.confirmLeave && current.wouldLoseData?.()) {
    event.preventDefault();
    event.returnValue = "";
  }
});
route();
