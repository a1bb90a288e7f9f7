// Display helpers shared by the pages.
import { ADAPTER, MODEL_MENU_LABEL, TARGET } from "./contract.js";
export function shortId(id, head = 6, tail = 4) {
  if (!id) return "";
  return id.length <= head + tail + 1 ? id : `${id.slice(0, head)}…${id.slice(-tail)}`;
}

export function relativeTime(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (Number.isNaN(seconds)) return "—";
  const abs = Math.abs(seconds);
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  for (const [unit, size] of units) {
    if (abs >= size) {
      const n = Math.floor(abs / size);
      return seconds >= 0 ? `${n} ${unit}${n === 1 ? "" : "s"} ago` : `in ${n} ${unit}${n === 1 ? "" : "s"}`;
    }
  }
  return abs < 10 ? "just now" : `${abs} seconds ago`;
}

export function duration(job, now = Date.now()) {
  if (!job?.startedAt) return "N/A";
  const end = job.completedAt ? Date.parse(job.completedAt) : (job.status === "running" ? now : null);
  if (end === null) return "N/A";
  let s = Math.max(0, Math.round((end - Date.parse(job.startedAt)) / 1000));
  const hours = Math.floor(s / 3600); s -= hours * 3600;
  const minutes = Math.floor(s / 60); s -= minutes * 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (hours) return `${hours}h ${pad(minutes)}m ${pad(s)}s`;
  if (minutes) return `${minutes}m ${pad(s)}s`;
  return `${s}s`;
}

export function dateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function clock(iso) {
  const d = iso ? new Date(iso) : new Date();
  return d.toTimeString().slice(0, 8);
}

export function targetSummary(target) {
  if (!target) return "";
  if (target.kind === TARGET.BASE_MODEL) return `Base model: ${target.baseModel}`;
  if (target.kind === TARGET.MODEL_MENU) return MODEL_MENU_LABEL;
  // A kind this Studio does not know (a newer server's) is named, never a broken list.
  if (target.kind !== TARGET.ADAPTER) return `Target: ${target.kind}`;
  const a = target.adapter || {};
  const job = (a.jobId || "").slice(0, 8);
  return a.kind === ADAPTER.CHECKPOINT ? `Checkpoint step ${a.step} (job ${job})` : `Final adapter (job ${job})`;
}

export function hostOf(url) {
  try { return new URL(url).host; } catch { return url; }
}
