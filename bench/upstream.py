"""Arkor in front of vLLM against vLLM alone: the edge's added latency and its throughput.

Run: ``.venv/bin/python bench/upstream.py`` (a few minutes; it starts vLLM's CPU build from
the virtualenv tests/vllm_server.py makes, unless ``--vllm-url`` names a running vLLM that
serves the embedded model with LoRA and runtime loading on).

One vLLM, one ``arkor cloud serve`` subprocess sending the embedded model's requests to it
(``--upstream``), four rank-8 adapters (random weights) imported as jobs and deployed, and the
same requests sent both ways over HTTP in the same run:

- added latency: ``--calls`` sequential 1-token chat requests on an adapter, p50/p99 through
  Arkor minus straight to vLLM;
- throughput: ``--concurrency`` concurrent requests spread over the four adapters, each
  exactly ``--max-tokens`` tokens (``ignore_eos``), aggregate completion tokens/s, the two
  ways alternating ``--repeat`` times; the ratio of the medians (target >= 95 %).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from engine_throughput import PROMPTS, make_adapters  # noqa: E402
from tests.servers import free_port  # noqa: E402

from arkor.engine.embedded import ensure_embedded_model  # noqa: E402
from arkor.engine.registry import EMBEDDED_MODEL_NAME  # noqa: E402
from arkor.engine.upstream import adapter_name  # noqa: E402
from arkor.sdk import CloudApiClient  # noqa: E402


async def chat(client: httpx.AsyncClient, url: str, model: str, prompt: str,
               max_tokens: int) -> int:
    answer = await client.post(url, json={
        "model": model, "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True})
    answer.raise_for_status()
    return int(answer.json()["usage"]["completion_tokens"])


async def throughput(targets: list[tuple[str, str]], concurrency: int, max_tokens: int
                     ) -> float:
    """Aggregate completion tokens/s of ``concurrency`` requests over ``targets`` (url, model)."""
    async with httpx.AsyncClient(timeout=600) as client:
        started = time.perf_counter()
        counts = await asyncio.gather(*(
            chat(client, *targets[i % len(targets)], PROMPTS[i % len(PROMPTS)], max_tokens)
            for i in range(concurrency)))
        return sum(counts) / (time.perf_counter() - started)


async def latencies(url: str, model: str, calls: int) -> list[float]:
    async with httpx.AsyncClient(timeout=120) as client:
        out = []
        for i in range(calls):
            started = time.perf_counter()
            await chat(client, url, model, PROMPTS[i % len(PROMPTS)], 1)
            out.append((time.perf_counter() - started) * 1000)
        return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_arkor(data_dir: Path, vllm_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    arkor = Path(sys.executable).parent / "arkor"
    process = subprocess.Popen(
        [str(arkor), "cloud", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--upstream", f"{EMBEDDED_MODEL_NAME}={vllm_url}",
         "--log-level", "WARNING"],
        env={**os.environ, "ARKOR_SIGNUP": "anonymous"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("arkor cloud serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vllm-url", help="a running vLLM (else one is started)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        model_dir = ensure_embedded_model(data / "models")
        vllm = None
        vllm_url = args.vllm_url
        if vllm_url is None:
            from tests.vllm_server import VllmServer, ensure_vllm

            vllm = VllmServer(ensure_vllm(), model_dir, EMBEDDED_MODEL_NAME, work / "vllm.log")
            vllm.start()
            vllm_url = vllm.url
        arkor, url = start_arkor(data, vllm_url)
        try:
            refs = make_adapters(model_dir, work / "adapters", 4)
            anon = CloudApiClient(base_url=url).create_anonymous_session()
            client = CloudApiClient(base_url=url, token=anon.token)
            project = client.create_project(anon.personal_org.slug, name="bench", slug="bench")
            scope = {"orgSlug": anon.personal_org.slug, "projectSlug": project.slug}
            through: list[tuple[str, str]] = []
            direct: list[tuple[str, str]] = []
            for index, ref in enumerate(refs):
                job = client.import_adapter(scope, ref.path, name=f"bench-{index}",
                                            model=EMBEDDED_MODEL_NAME)
                deployment = client.create_deployment(
                    scope, slug=f"bench-{index}", auth_mode="none",
                    target={"kind": "adapter", "adapter": {"kind": "final", "jobId": job.id}})
                through.append((f"{deployment.base_url}/chat/completions", "x"))
                direct.append((f"{vllm_url}/v1/chat/completions", adapter_name(ref)))
            # Arkor loads each adapter into vLLM on its first call; the direct side reuses it.
            asyncio.run(throughput(through, len(through), 2))
            asyncio.run(throughput(direct, len(direct), 2))

            lat_direct = asyncio.run(latencies(*direct[0], args.calls))
            lat_through = asyncio.run(latencies(*through[0], args.calls))
            runs: dict[str, list[float]] = {"vllm": [], "arkor": []}
            for _ in range(args.repeat):
                runs["vllm"].append(asyncio.run(throughput(direct, args.concurrency,
                                                           args.max_tokens)))
                runs["arkor"].append(asyncio.run(throughput(through, args.concurrency,
                                                            args.max_tokens)))
        finally:
            arkor.terminate()
            arkor.wait(timeout=30)
            if vllm is not None:
                vllm.stop()

    load = os.getloadavg()[0]
    vllm_tps, arkor_tps = statistics.median(runs["vllm"]), statistics.median(runs["arkor"])
    print(f"{args.concurrency} concurrent over 4 adapters, {args.max_tokens} tokens each, "
          f"median of {args.repeat}; load average at the end: {load:.1f}")
    print(f"tokens/s of each run: vLLM {', '.join(f'{v:.0f}' for v in runs['vllm'])}; "
          f"through Arkor {', '.join(f'{v:.0f}' for v in runs['arkor'])}")
    print(f"vLLM alone: {vllm_tps:.1f} tok/s; through Arkor: {arkor_tps:.1f} tok/s; "
          f"ratio {arkor_tps / vllm_tps:.1%} (target >= 95 %)")
    print(f"1-token request on an adapter, {args.calls} sequential: vLLM p50 "
          f"{pct(lat_direct, 0.5):.1f} ms / p99 {pct(lat_direct, 0.99):.1f} ms; through Arkor "
          f"p50 {pct(lat_through, 0.5):.1f} ms / p99 {pct(lat_through, 0.99):.1f} ms; added "
          f"p50 {pct(lat_through, 0.5) - pct(lat_direct, 0.5):.1f} ms, p99 "
          f"{pct(lat_through, 0.99) - pct(lat_direct, 0.99):.1f} ms")


if __name__ == "__main__":
    main()
