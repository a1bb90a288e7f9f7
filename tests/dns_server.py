"""A real DNS server for tests (dnslib, UDP on 127.0.0.1 and a free port) answering TXT
records the test sets, so custom domains are verified the way production verifies them.

    with TxtServer() as dns:
        settings = Settings(..., dns_nameservers=(dns.address,))
        dns.records["_arkor-challenge.api.example.com"] = ["arkor-..."]

A name without records is NXDOMAIN; ``dns.failing = True`` answers SERVFAIL to everything
(a lookup that fails rather than finds nothing).
"""

from __future__ import annotations

import socket
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.failing = False
        self.queries: list[str] = []

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        self.queries.append(name)
        values = self.records.get(name)
        if self.failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(value), ttl=0))
        return reply


class TxtServer:
    def __init__(self) -> None:
        self.zone = _Zone()
        self.port = free_udp_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server = DNSServer(self.zone, address="127.0.0.1", port=self.port,
                                 logger=DNSLogger(logf=lambda _line: None))

    @property
    def records(self) -> dict[str, list[str]]:
        return self.zone.records

    @property
    def failing(self) -> bool:
        return self.zone.failing

    @failing.setter
    def failing(self, value: bool) -> None:
        self.zone.failing = value

    def __enter__(self) -> TxtServer:
        self._server.start_thread()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.stop()
