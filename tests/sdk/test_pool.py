"""Pooled connections are dropped before the server would close them: a request never goes
out on a keep-alive connection the server is closing at that moment (a ``ReadError`` that
reached the Studio as "Could not reach the Arkor cloud API" in one CI run)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from arkor.cloud.settings import DEFAULT_KEEP_ALIVE_S, Settings
from arkor.sdk import AsyncCloudApiClient, CloudApiClient
from arkor.sdk.pool import IDLE_CONNECTION_S
from arkor.server import create_app
from arkor.studio.upstream import SharedPool
from tests.servers import LiveServer

ROUTE = "/v1/auth/cli/config"


def port_of(response) -> int:
    """The client's end of the connection the response came on."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def test_idle_connections_are_dropped_well_before_the_server_closes_them(
        tmp_path: Path) -> None:
    assert IDLE_CONNECTION_S <= DEFAULT_KEEP_ALIVE_S / 2
    settings = Settings(data_dir=tmp_path)
    assert settings.keep_alive_s == DEFAULT_KEEP_ALIVE_S

    async def ports_of_three_clients(url: str) -> list[list[int]]:
        pool = SharedPool()
        with CloudApiClient(base_url=url) as sync:
            async with AsyncCloudApiClient(base_url=url) as own, \
                    AsyncCloudApiClient(base_url=url, transport=pool) as studio:
                rounds = []
                for pause in (0, 0.2, IDLE_CONNECTION_S + 0.5):
                    await asyncio.sleep(pause)
                    rounds.append([port_of(sync.forward("GET", ROUTE)),
                                   port_of(await own.forward("GET", ROUTE)),
                                   port_of(await studio.forward("GET", ROUTE))])
        await pool.shutdown()
        return rounds

    with LiveServer(create_app(settings), settings=settings) as url:
        first, soon, later = asyncio.run(ports_of_three_clients(url))
    assert soon == first  # a connection is reused while it is fresh
    assert all(a != b for a, b in zip(first, later, strict=True)), (first, later)
