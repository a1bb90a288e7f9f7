"""LoRA training speed and memory for the demo config, and what the adapter learned.

Run: ``.venv/bin/python bench/training.py`` (about two minutes on two idle cores).

1. Runs the demo job (``arkor.training.demo.DEMO_CONFIG``) through the real runner process,
   ``python -m arkor.training.runner``, and reads its events.
2. Prints seconds per optimizer step, training tokens per second (non-padding tokens through
   forward + backward), the runner's peak RSS, and wall time from launch to the final adapter.
3. Baseline measured in the same run: forward-only (no grad) tokens per second on the same
   batches, so the training cost prints as a ratio to inference-style forward passes.
4. Greedy-decodes the 24 held-out tickets with the base model and with the final adapter and
   prints how many answers are exactly ``LABEL: <label>`` and how many have the right label.

CPU timings on a shared machine vary by ±20 % or more; another process using the same cores
makes every figure much worse.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from arkor.training.demo import DEMO_CONFIG, demo_dataset_path, demo_eval_path
from arkor.training.spec import RunSpec, runner_command, write_spec

ANSWER = re.compile(r"LABEL: (billing|bug|other)")


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_demo(base_dir: Path, work: Path, config: dict[str, Any]) -> tuple[list[dict], float]:
    spec = write_spec(RunSpec(job_id="bench", base_model_dir=base_dir,
                              base_model_name=EMBEDDED_MODEL_NAME,
                              dataset_path=demo_dataset_path(), output_dir=work / "out",
                              config=config), work / "spec.json")
    started = time.perf_counter()
    proc = subprocess.run(runner_command(spec), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    found = [json.loads(line) for line in proc.stdout.splitlines()]
    if proc.returncode != 0:
        sys.exit(f"runner failed ({proc.returncode}): {found[-1:]}\n{proc.stderr[-2000:]}")
    return found, wall


def forward_only_tokens_per_second(base_dir: Path, config: dict[str, Any]) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arkor.contract.job_config import parse_job_config
    from arkor.training.dataset import validate_dataset
    from arkor.training.encoding import collate
    from arkor.training.lora import encode_all

    parsed = parse_job_config(config)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    examples, _ = encode_all(tokenizer, list(validate_dataset(demo_dataset_path()).examples),
                             parsed)
    batches = [collate(examples[i:i + parsed.batch_size], tokenizer.pad_token_id)
               for i in range(0, 6 * parsed.batch_size, parsed.batch_size)]
    with torch.no_grad():
        model(**batches[0])
        start, tokens = time.perf_counter(), 0
        for batch in batches[1:]:
            model(**batch)
            tokens += int(batch["attention_mask"].sum())
    return tokens / (time.perf_counter() - start)


def held_out_answers(base_dir: Path, adapter: Path | None) -> list[tuple[str, str]]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.padding_side = "left"
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    rows = [json.loads(line)["messages"] for line in demo_eval_path().read_text().splitlines()]
    prompts = [tokenizer.apply_chat_template(r[:-1], tokenize=False, add_generation_prompt=True)
               for r in rows]
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return list(zip(texts, [r[-1]["content"] for r in rows], strict=True))


def score(answers: list[tuple[str, str]]) -> str:
    formatted = sum(bool(ANSWER.fullmatch(text)) for text, _ in answers)
    correct = sum(text == gold for text, gold in answers)
    return f"format {formatted}/{len(answers)}, correct label {correct}/{len(answers)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path,
                        default=Path(".pytest_cache/d/arkor-models"))
    parser.add_argument("--max-steps", type=int, default=DEMO_CONFIG["maxSteps"])
    parser.add_argument("--keep", type=Path, help="keep the job output here")
    args = parser.parse_args()
    base_dir = ensure_embedded_model(args.models_dir)
    config = {**DEMO_CONFIG, "maxSteps": args.max_steps}
    work = args.keep or Path(tempfile.mkdtemp(prefix="arkor-bench-training-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"demo config: {json.dumps({k: v for k, v in config.items() if k != 'datasetSource'})}")

    found, wall = run_demo(base_dir, work, config)
    logs = [e for e in found if e["type"] == "training.log"]
    metrics = next(e for e in found if e["type"] == "training.completed")["metrics"]
    gaps = [parse_time(b["timestamp"]) - parse_time(a["timestamp"])
            for a, b in itertools.pairwise(logs)]
    started_at = parse_time(found[0]["timestamp"])
    print(f"steps: {metrics['steps']}, final loss {metrics['finalLoss']:.4f} "
          f"(step 1: {logs[0]['loss']:.4f})")
    print(f"seconds per step: {metrics['secondsPerStep']:.2f} mean, "
          f"{statistics.median(gaps):.2f} median between log events")
    per_step_tokens = metrics["trainTokens"] / metrics["steps"]
    print(f"training tokens/s: {metrics['tokensPerSecond']:.0f} mean, "
          f"{per_step_tokens / statistics.median(gaps):.0f} at the median step "
          f"({metrics['trainTokens']} non-padding tokens)")
    print(f"peak RSS of the runner: {metrics['peakRssMb']:.0f} MiB (its own: heap.peak_rss_mib)")
    print(f"wall: {wall:.1f} s from launch to final adapter "
          f"({started_at - (time.time() - wall):.1f} s before training.started, "
          f"{metrics['trainRuntimeSeconds']:.1f} s training)")

    forward = forward_only_tokens_per_second(base_dir, config)
    print(f"baseline forward-only tokens/s (no grad, same batches): {forward:.0f}; "
          f"training runs at {metrics['tokensPerSecond'] / forward:.2f}x of it")

    for label, adapter in [("base model", None), ("final adapter", work / "out" / "final")]:
        answers = held_out_answers(base_dir, adapter)
        print(f"held-out tickets, {label}: {score(answers)}")
    for checkpoint in sorted((work / "out" / "checkpoints").iterdir(),
                             key=lambda p: int(p.name.removeprefix("step-"))):
        print(f"held-out tickets, {checkpoint.name}: "
              f"{score(held_out_answers(base_dir, checkpoint))}")


if __name__ == "__main__":
    main()
