"""Which requests belong to the edge, by Host header or by path."""

from __future__ import annotations

import pytest

from arkor.edge.routing import slug_from_host, split_path


@pytest.mark.parametrize(
    ("host", "domain", "slug"),
    [
        ("support-bot.localhost:8787", "localhost", "support-bot"),
        ("support-bot.localhost", "localhost", "support-bot"),
        ("Support-Bot.LOCALHOST:80", "localhost", "support-bot"),
        ("bot.arkor.example.com", "arkor.example.com", "bot"),
        ("localhost:8787", "localhost", None),
        ("127.0.0.1:8787", "localhost", None),
        ("a.b.localhost", "localhost", None),
        ("-bad.localhost", "localhost", None),
        ("bot.example.org", "arkor.example.com", None),
        ("[::1]:8787", "localhost", None),
        ("", "localhost", None),
    ],
)
def test_slug_from_host(host: str, domain: str, slug: str | None) -> None:
    assert slug_from_host(host, domain) == slug


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("/d/bot/v1/chat/completions", ("bot", "/v1/chat/completions")),
        ("/d/Bot/v1/models", ("bot", "/v1/models")),
        ("/d/bot", ("bot", "/")),
        ("/d/", None),
        ("/v1/endpoints", None),
        ("/dx/bot/v1", None),
    ],
)
def test_split_path(path: str, split: tuple[str, str] | None) -> None:
    assert split_path(path) == split
