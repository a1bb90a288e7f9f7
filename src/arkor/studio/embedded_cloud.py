"""The local cloud (control plane, edge, engine, training runner) inside ``arkor dev``.

It runs in its own thread with its own event loop, so a busy training supervisor or a
model load never stalls the Studio's requests.
"""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from arkor.cloud.settings import Settings

START_TIMEOUT_S = 60.0


def is_arkor_cloud(url: str) -> bool:
    """Whether an Arkor control plane already answers at ``url`` (then ``arkor dev`` reuses it)."""
    try:
        response = httpx.get(url + "/openapi.json", timeout=3.0)
        title = response.json().get("info", {}).get("title")
        return bool(title == "Arkor control plane")
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


class EmbeddedCloud:
    def __init__(self, settings: Settings, port: int) -> None:
        from arkor import heap
        from arkor.cloud.serving import server_config
        from arkor.server import create_app

        self.url = f"http://127.0.0.1:{port}"
        config = server_config(create_app(settings), settings, host="127.0.0.1", port=port)
        heap.enable()  # arkor dev runs until it is stopped
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="arkor-cloud",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"The local cloud could not start on {self.url}.")
            if time.monotonic() > deadline:
                raise RuntimeError(f"The local cloud did not start on {self.url} in time.")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)
