// Overview (#/): start a training run (demo data or an uploaded JSONL file), recent jobs.
import { api, poll } from "../api.js";
import { card, emptyState, errorBox, field, h, refresh, replace } from "../dom.js";
import { duration, relativeTime } from "../format.js";
import { statusBadge } from "../components/widgets.js";

const SETTINGS = [
  // [key, label, default, hint, attrs]
  ["maxSteps", "Max steps", 30, "Optimizer steps. The demo learns its answer format in about 30.", { min: 1 }],
  ["evalSteps", "Eval every N steps", 10, "Eval loss on held-out data (blank: no eval).", { min: 1 }],
  ["saveSteps", "Checkpoint every N steps", 10, "0 saves only the final adapter.", { min: 0 }],
  ["learningRate", "Learning rate", 0.001, "", { min: 0, step: "any" }],
  ["loraR", "LoRA rank", 8, "", { min: 1 }],
  ["batchSize", "Batch size", 8, "", { min: 1 }],
];

export function mount(main) {
  const jobsBox = h("div");
  const status = h("div", { role: "status", "aria-live": "polite" });
  const nameInput = h("input", { id: "train-name", placeholder: "support-triage", autocomplete: "off" });
  const fileInput = h("input", { id: "train-file", type: "file", accept: ".jsonl,.json,application/jsonl" });
  const settingInputs = Object.fromEntries(SETTINGS.map(([key, , value, , attrs]) =>
    [key, h("input", { id: `train-${key}`, type: "number", value: String(value), ...attrs })]));
  let source = "demo";
  const fileRow = field("JSONL file", fileInput, 'One {"messages": [...]} chat per line. Problems are listed by line number.');
  fileRow.hidden = true;
  const sourceRadio = (value, label) => h("label", { class: "radio" },
    h("input", { type: "radio", name: "train-source", value, checked: value === source,
      onchange: () => { source = value; fileRow.hidden = value !== "upload"; } }), label);
  const startButton = h("button", { type: "submit", class: "button primary" }, "Start training");

  async function start(event) {
    event.preventDefault();
    const settings = {};
    for (const [key, input] of Object.entries(settingInputs)) {
      if (input.value !== "") settings[key] = Number(input.value);
    }
    const body = { settings };
    if (nameInput.value.trim()) body.name = nameInput.value.trim();
    startButton.disabled = true;
    startButton.textContent = "Starting…";
    replace(status);
    try {
      if (source === "upload") {
        const file = fileInput.files[0];
        if (!file) throw new Error("Choose a JSONL file to upload first.");
        replace(status, h("p", { class: "muted" }, `Uploading ${file.name}…`));
        const { dataset } = await api.post(`/api/datasets?name=${encodeURIComponent(file.name)}`, file);
        body.datasetUploadId = dataset.id;
        replace(status, h("p", { class: "muted" }, `Uploaded ${dataset.name}: ${dataset.numExamples} examples.`));
      } else {
        body.dataset = "demo";
      }
      const { job } = await api.post("/api/train", body);
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      replace(status, h("pre", { class: "error-box", role: "alert" }, err.message));
    } finally {
      startButton.disabled = false;
      startButton.textContent = "Start training";
    }
  }

  const form = h("form", { class: "stack", onsubmit: start },
    h("fieldset", { class: "radios" }, h("legend", {}, "Dataset"),
      sourceRadio("demo", "Demo: support-ticket triage (100 examples, 24 held out)"),
      sourceRadio("upload", "Upload a JSONL file")),
    fileRow,
    field("Run name", nameInput, "Defaults to support-triage for the demo, studio-run otherwise."),
    h("details", { class: "advanced" }, h("summary", {}, "Training settings"),
      h("div", { class: "grid-3" }, SETTINGS.map(([key, label, , hint]) => field(label, settingInputs[key], hint)))),
    h("div", { class: "row" }, startButton), status);

  async function loadJobs() {
    try {
      const { jobs } = await api.get("/api/jobs");
      if (!jobs.length) {
        replace(jobsBox, emptyState("No jobs yet", "Start a training run above; it shows up here."));
        return;
      }
      refresh(jobsBox, h("ul", { class: "list" }, jobs.slice(0, 5).map((job) =>
        h("li", {}, h("a", { class: "list-row", href: `#/jobs/${encodeURIComponent(job.id)}` },
          statusBadge(job.status), h("span", { class: "grow strong" }, job.name),
          h("span", { class: "muted" }, duration(job)), h("span", { class: "muted" }, relativeTime(job.createdAt)))))));
    } catch (err) {
      replace(jobsBox, errorBox(`Failed to load jobs: ${err.message}`));
    }
  }

  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"),
      h("p", { class: "muted" }, "Fine-tune a LoRA adapter, try it in the Playground, publish it at its own OpenAI-compatible URL.")),
    h("div", { class: "columns" },
      card("Run training", form),
      h("div", { class: "stack" },
        card("Recent jobs", jobsBox, h("p", {}, h("a", { href: "#/jobs" }, "All jobs →"))),
        h("div", { class: "tiles" },
          h("a", { class: "tile", href: "#/playground" }, h("strong", {}, "Open the Playground"), h("span", { class: "muted" }, "Chat with a base model or a trained adapter.")),
          h("a", { class: "tile", href: "#/endpoints" }, h("strong", {}, "Publish an endpoint"), h("span", { class: "muted" }, "Serve an adapter at its own URL with API keys."))))));
  replace(jobsBox, h("p", { class: "muted" }, "Loading…"));
  loadJobs();
  const stop = poll(loadJobs, 5000);
  return { destroy: stop };
}
