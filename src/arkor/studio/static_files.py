"""The single-page app's files, with this launch's token injected into every HTML page."""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".map": "application/json",
}


def inject_token(page: str, token: str) -> str:
    meta = f'<meta name="arkor-studio-token" content="{html.escape(token, quote=True)}">'
    index = page.find("</head>")
    if index < 0:
        return meta + page
    return page[:index] + meta + page[index:]


class StaticFiles:
    def __init__(self, root: Path, token: str) -> None:
        self.root = root.resolve()
        self.token = token

    def _resolve(self, path: str) -> Path | None:
        candidate = (self.root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def _serve(self, file: Path) -> Response:
        suffix = file.suffix.lower()
        headers = {"cache-control": "no-cache"}
        if suffix == ".html":
            page = inject_token(file.read_text(encoding="utf-8"), self.token)
            return Response(page, media_type=MEDIA_TYPES[".html"], headers=headers)
        media = MEDIA_TYPES.get(suffix, "application/octet-stream")
        return Response(file.read_bytes(), media_type=media, headers=headers)

    async def serve(self, request: Request) -> Response:
        path = request.url.path
        if "\x00" in path:
            return PlainTextResponse("Not found", status_code=404)
        if path in ("", "/"):
            path = "/index.html"
        file = self._resolve(path)
        if file is not None:
            return self._serve(file)
        if "." not in path.rsplit("/", 1)[-1]:
            return self._serve(self.root / "index.html")
        return PlainTextResponse("Not found", status_code=404)
