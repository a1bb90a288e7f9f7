"""llama.cpp's side of ``engine_speed.py``, run by an interpreter that has llama-cpp-python.

Reads ``{"gguf", "prompts", "max_tokens", "threads", "repeat"}`` as JSON on stdin (prompts
already rendered with the chat template; ``"extra_bufts": false`` loads the model without
llama.cpp's extra buffer types, see :func:`without_extra_bufts`) and prints one JSON line:
``{"single": [...], "mixed": [...], "ttft_repeat_ms": [...]}``.

- single: decode tokens/s of ``prompts[0]`` (tokens after the first over the time from the
  first to the last), EOS banned so every run makes ``max_tokens`` tokens;
- mixed: all prompts served one after another (llama-cpp-python serves one request at a
  time and cannot pick a LoRA per request), aggregate output tokens/s;
- ttft_repeat_ms: a 1-token request for ``prompts[0]`` right after the same prompt was
  evaluated (llama.cpp keeps the previous prompt's KV and reuses the common prefix).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def without_extra_bufts() -> None:
    """Load models with ``use_extra_bufts`` off: llama.cpp's weight repacking into its
    "extra" buffer types, which on a CPU with AMX is its AMX path. llama-cpp-python has no
    argument for it, so its default model parameters are wrapped. Built natively on an Intel
    Xeon with AMX-INT8 (2026-12-03, llama-cpp-python 0.3.36), the AMX path died with SIGSEGV
    on the first prompt; without it the same build answered correctly."""
    import llama_cpp.llama as high_level

    low_level = high_level.llama_cpp
    default = low_level.llama_model_default_params

    def params() -> Any:
        found = default()
        found.use_extra_bufts = False
        return found

    low_level.llama_model_default_params = params


def main() -> None:
    spec = json.load(sys.stdin)
    if not spec.get("extra_bufts", True):
        without_extra_bufts()
    from llama_cpp import Llama

    llm = Llama(model_path=spec["gguf"], n_ctx=2048, n_threads=spec["threads"],
                n_threads_batch=spec["threads"], verbose=False)
    ban_eos = {llm.token_eos(): -1e9}
    prompts: list[str] = spec["prompts"]
    max_tokens: int = spec["max_tokens"]

    def run(prompt: str, tokens: int) -> tuple[int, float, float, float]:
        began = time.perf_counter()
        first = last = 0.0
        count = 0
        stream: Any = llm.create_completion(prompt, max_tokens=tokens, temperature=0.0,
                                            logit_bias=ban_eos, stream=True)
        for _chunk in stream:
            now = time.perf_counter()
            first = first or now
            last = now
            count += 1
        return count, began, first, last

    run(prompts[0], 4)  # warm up
    figures: dict[str, list[float]] = {"single": [], "mixed": [], "ttft_repeat_ms": []}
    for _ in range(spec["repeat"]):
        count, _began, first, last = run(prompts[0], max_tokens)
        figures["single"].append((count - 1) / (last - first))
        _count, began, first, _last = run(prompts[0], 1)
        figures["ttft_repeat_ms"].append((first - began) * 1000)
        began = time.perf_counter()
        total = sum(run(prompt, max_tokens)[0] for prompt in prompts)
        figures["mixed"].append(total / (time.perf_counter() - began))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
