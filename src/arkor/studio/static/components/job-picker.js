// <target-picker>: what a deployment serves. A completed job's final adapter, one of a
// job's checkpoints, a base model, or the model menu (every public base model, picked per
// request by `model`), chosen from lists; a pasted job UUID still works.
import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { relativeTime, shortId } from "../format.js";
import { ADAPTER, MODEL_MENU_LABEL, TARGET } from "../contract.js";

const PASTE = "__paste__";

class TargetPicker extends HTMLElement {
  constructor() {
    super();
    this.jobs = [];
    this.baseModels = [];
    this.kind = ADAPTER.FINAL;
    this.uid = Math.random().toString(36).slice(2, 8);
  }

  connectedCallback() {
    if (this.built) return;
    this.built = true;
    this.build();
    this.load();
  }

  async load() {
    try {
      const [jobs, models] = await Promise.all([api.get("/api/jobs"), api.get("/api/base-models")]);
      this.jobs = jobs.jobs || [];
      this.baseModels = (models.baseModels || []).map((m) => m.name);
      this.note.textContent = "";
    } catch (err) {
      this.note.textContent = `Couldn't load jobs: ${err.message}. You can still paste a job UUID.`;
    }
    this.loaded = true;
    this.fillJobs();
    // A choice made while the lists were loading wins over the target the picker was given.
    if (this.wanted && !this.touched) this.apply(this.wanted);
    this.dispatchEvent(new Event("loaded"));
  }

  build() {
    const radio = (value, label) => h("label", { class: "radio" },
      h("input", { type: "radio", name: `kind-${this.uid}`, value, checked: value === this.kind,
        onchange: () => { this.kind = value; this.touched = true; this.sync(); } }), label);
    this.jobSelect = h("select", { id: `job-${this.uid}`, onchange: () => { this.pasting = this.jobSelect.value === PASTE; this.sync(); } });
    this.jobInput = h("input", { id: `uuid-${this.uid}`, placeholder: "00000000-0000-4000-8000-…", autocomplete: "off", spellcheck: "false" });
    this.stepSelect = h("select", { id: `step-${this.uid}` });
    this.stepInput = h("input", { id: `stepn-${this.uid}`, type: "number", min: "0", value: "0" });
    this.modelInput = h("input", { id: `model-${this.uid}`, list: `models-${this.uid}`, placeholder: "HuggingFaceTB/SmolLM2-135M-Instruct" });
    this.modelList = h("datalist", { id: `models-${this.uid}` });
    this.note = h("p", { class: "hint" });
    this.jobRow = h("div", { class: "field" }, h("label", { for: this.jobSelect.id }, "Job"), this.jobSelect);
    this.uuidRow = h("div", { class: "field" }, h("label", { for: this.jobInput.id }, "Job UUID"), this.jobInput);
    this.stepRow = h("div", { class: "field" }, h("label", { for: this.stepSelect.id }, "Checkpoint"), this.stepSelect);
    this.stepNRow = h("div", { class: "field" }, h("label", { for: this.stepInput.id }, "Checkpoint step"), this.stepInput);
    this.modelRow = h("div", { class: "field" }, h("label", { for: this.modelInput.id }, "Base model name"), this.modelInput, this.modelList);
    replace(this,
      h("fieldset", { class: "radios" }, h("legend", {}, "Target"),
        radio(ADAPTER.FINAL, "Job's final adapter"), radio(ADAPTER.CHECKPOINT, "Specific checkpoint"),
        radio(TARGET.BASE_MODEL, "Base model only (no LoRA)"), radio(TARGET.MODEL_MENU, MODEL_MENU_LABEL)),
      this.jobRow, this.uuidRow, this.stepRow, this.stepNRow, this.modelRow, this.note);
    this.fillJobs();
  }

  candidates() {
    return this.kind === ADAPTER.FINAL
      ? this.jobs.filter((j) => j.status === "completed" && j.hasFinalAdapter !== false)
      : this.jobs.filter((j) => (j.checkpoints || []).length);
  }

  fillJobs() {
    const keep = this.jobSelect.value;
    const jobs = this.candidates();
    replace(this.jobSelect,
      jobs.map((j) => h("option", { value: j.id }, `${j.name} · ${shortId(j.id, 8, 4)} · ${j.status} · ${relativeTime(j.createdAt)}`)),
      h("option", { value: PASTE }, "Paste a job UUID…"));
    this.jobSelect.value = jobs.some((j) => j.id === keep) || this.pasting ? keep : (jobs[0]?.id ?? PASTE);
    replace(this.modelList, this.baseModels.map((m) => h("option", { value: m })));
    if (!this.modelInput.value && this.baseModels.length) this.modelInput.value = this.baseModels[0];
    this.sync();
  }

  sync() {
    const pasted = this.jobSelect.value === PASTE;
    const adapter = this.kind !== TARGET.BASE_MODEL && this.kind !== TARGET.MODEL_MENU;
    this.jobRow.hidden = !adapter;
    this.uuidRow.hidden = !adapter || !pasted;
    this.modelRow.hidden = this.kind !== TARGET.BASE_MODEL;
    this.stepNRow.hidden = this.kind !== ADAPTER.CHECKPOINT || !pasted;
    this.stepRow.hidden = this.kind !== ADAPTER.CHECKPOINT || pasted;
    for (const radio of this.querySelectorAll("input[type=radio]")) radio.checked = radio.value === this.kind;
    if (this.lastKind !== this.kind) { this.lastKind = this.kind; this.fillJobs(); return; }
    const job = this.jobs.find((j) => j.id === this.jobSelect.value);
    const steps = (job?.checkpoints || []).map((c) => c.step);
    const keep = this.stepSelect.value;
    replace(this.stepSelect, steps.map((s) => h("option", { value: String(s) }, `step ${s}`)));
    if (steps.includes(Number(keep))) this.stepSelect.value = keep;
  }

  // The deployment target, or null with a message in `error`.
  get value() {
    if (this.kind === TARGET.MODEL_MENU) return { kind: TARGET.MODEL_MENU };
    if (this.kind === TARGET.BASE_MODEL) {
      const model = this.modelInput.value.trim();
      return model ? { kind: TARGET.BASE_MODEL, baseModel: model } : null;
    }
    const pasted = this.jobSelect.value === PASTE;
    const jobId = pasted ? this.jobInput.value.trim() : this.jobSelect.value;
    if (!jobId) return null;
    if (this.kind === ADAPTER.FINAL) return { kind: TARGET.ADAPTER, adapter: { kind: ADAPTER.FINAL, jobId } };
    const raw = pasted ? this.stepInput.value : this.stepSelect.value;
    const step = Number(raw);
    if (raw === "" || !Number.isInteger(step) || step < 0) return null;
    return { kind: TARGET.ADAPTER, adapter: { kind: ADAPTER.CHECKPOINT, jobId, step } };
  }

  set target(target) {
    this.wanted = target;
    if (this.loaded && target) this.apply(target);
  }

  apply(target) {
    if (target.kind !== TARGET.ADAPTER && target.kind !== TARGET.BASE_MODEL && target.kind !== TARGET.MODEL_MENU) return;
    this.kind = target.kind === TARGET.ADAPTER ? target.adapter.kind : target.kind;
    this.lastKind = null;
    this.sync();
    if (target.kind === TARGET.MODEL_MENU) return;
    if (target.kind === TARGET.BASE_MODEL) { this.modelInput.value = target.baseModel; return; }
    const known = [...this.jobSelect.options].some((o) => o.value === target.adapter.jobId);
    this.jobSelect.value = known ? target.adapter.jobId : PASTE;
    this.pasting = !known;
    if (!known) this.jobInput.value = target.adapter.jobId;
    this.sync();
    if (target.adapter.kind === ADAPTER.CHECKPOINT) {
      this.stepSelect.value = String(target.adapter.step);
      this.stepInput.value = String(target.adapter.step);
    }
  }
}

customElements.define("target-picker", TargetPicker);
