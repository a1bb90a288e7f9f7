"""Browser tests: Debian's chromium, driven by Playwright, against a real ``arkor dev``.

``arkor dev`` runs as a subprocess on free ports with its embedded cloud; HOME, ARKOR_HOME,
the data directory and the project directory are temporary. Chromium comes from apt
(``apt-get install -y chromium``), never ``playwright install``. Without it these tests skip
locally and fail under CI (``CI`` set), where ``.ci/run`` installs it first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMIUM_FIX, link_cached_models, note_missing
from tests.dns_server import TxtServer
from tests.servers import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).parent / "screenshots"
READY = re.compile(r"Arkor Studio running on (http://localhost:\d+)")


def require_chromium() -> None:
    if os.path.exists(CHROMIUM) and shutil.which("chromium"):
        return
    reason = f"{CHROMIUM} is missing: {CHROMIUM_FIX}"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    note_missing("Debian's chromium (the Studio's browser tests)", CHROMIUM_FIX)
    pytest.skip(reason)


@dataclass
class DevServer:
    url: str
    cloud_url: str
    home: Path
    project: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)


def _pump(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


@pytest.fixture(scope="package")
def dns() -> Iterator[TxtServer]:
    """The DNS server the Studio's embedded cloud checks custom domains' TXT records with."""
    with TxtServer() as server:
        yield server


@pytest.fixture(scope="package")
def dev_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
               dns: TxtServer) -> Iterator[DevServer]:
    require_chromium()
    root = tmp_path_factory.mktemp("studio-e2e")
    home, project, data = root / "home", root / "e2e-project", root / "cloud-data"
    for path in (home, project, data):
        path.mkdir()
    link_cached_models(data, request.config)
    env = {k: v for k, v in os.environ.items()
           if k not in ("ARKOR_CLOUD_API_URL", "ARKOR_DATABASE_URL")}
    # The Quick start samples send no max_tokens (their text is the contract's); a small
    # operator default keeps a rambling 3-step adapter from decoding hundreds of tokens.
    env.update(HOME=str(home), ARKOR_HOME=str(home / ".arkor"), ARKOR_DATA_DIR=str(data),
               PYTHONUNBUFFERED="1", NO_COLOR="1", COLUMNS="200",
               ARKOR_DEFAULT_MAX_TOKENS="48", ARKOR_DNS_NAMESERVERS=dns.address)
    port, cloud_port = free_port(), free_port()
    arkor = Path(sys.executable).parent / "arkor"
    process = subprocess.Popen(
        [str(arkor), "dev", "--port", str(port), "--cloud-port", str(cloud_port)],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
    deadline = time.monotonic() + 90
    url = None
    while url is None:
        found = [m for line in lines if (m := READY.search(line))]
        if found:
            url = found[0].group(1)
        elif process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("arkor dev did not start:\n" + "".join(lines), pytrace=False)
        else:
            time.sleep(0.1)
    server = DevServer(url=url, cloud_url=f"http://127.0.0.1:{cloud_port}", home=home,
                       project=project, process=process, output=lines)
    yield server
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """The package's one Chromium: Playwright's sync API allows one instance at a time, so a
    test that needs its own Studio opens a context here instead of starting Playwright."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def browser(dev_server: DevServer, chromium: Any) -> Any:
    return chromium


class ConsoleErrors(list[str]):
    def watch(self, page: Any) -> None:
        page.on("console", lambda m: self.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.append(f"uncaught: {e}"))


@pytest.fixture
def page(browser: Any, dev_server: DevServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page on the Studio; at the end: a screenshot, and no console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=dev_server.url)
    context.set_default_timeout(45_000)  # a loaded 2-core CI machine is slow
    page = context.new_page()
    errors = ConsoleErrors()
    errors.watch(page)
    page.on("dialog", lambda dialog: dialog.accept())
    page.console_errors = errors
    yield page
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert list(errors) == [], f"console errors: {list(errors)}"
