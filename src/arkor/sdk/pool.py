"""How the SDK's clients, and the Studio's shared pool under them, keep connections.

An idle pooled connection is dropped after :data:`IDLE_CONNECTION_S`: well under the 5 s our
server (like uvicorn by default) keeps one open. A client that kept it as long as the server
does would now and then send a request on a connection the server is closing at that moment;
it fails as a ``ReadError`` and cannot be sent again, as it may have been a POST.
"""

from __future__ import annotations

import httpx

IDLE_CONNECTION_S = 2.0
# httpx's own client defaults (100 connections, 20 kept idle) with the shorter idle time.
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20,
                           keepalive_expiry=IDLE_CONNECTION_S)
