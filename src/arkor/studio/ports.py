"""Binding the Studio's loopback port: the next free one unless the user pinned it."""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Callable

from arkor.studio.config import DEFAULT_STUDIO_PORT, PORT_ATTEMPTS

LOOPBACK = "127.0.0.1"
MAX_PORT = 65535
PLAIN_PORT = re.compile(r"[1-9][0-9]{0,4}")
PORT_RULE = (f"give a port from 1 to {MAX_PORT} in plain decimal digits, without a sign, "
             "spaces, leading zeros or 0x (e.g. 4100)")


def parse_port(text: str) -> int:
    """``text`` as a port number; anything but plain decimal digits 1-65535 is a ValueError
    saying what a port looks like."""
    if PLAIN_PORT.fullmatch(text) is None or int(text) > MAX_PORT:
        raise ValueError(f"{text!r} is not a port number; {PORT_RULE}.")
    return int(text)


def studio_url(port: int) -> str:
    """The address tools are given for a Studio on ``port``: the IP, so no resolver is asked
    whether ``localhost`` is IPv6 first."""
    return f"http://{LOOPBACK}:{port}"


class PortInUseError(OSError):
    pass


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock


def port_is_free(port: int) -> bool:
    try:
        _bind(port).close()
    except OSError:
        return False
    return True


def bind_studio_socket(port: int | None, *, warn: Callable[[str], None]) -> socket.socket:
    """A socket bound on 127.0.0.1. A pinned ``port`` that is taken is an error; otherwise
    up to ``PORT_ATTEMPTS`` ports from the default are tried, with a warning for each."""
    if port is not None:
        try:
            return _bind(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(
                f"Port {port} is in use. Stop what is using it, or pass another --port."
            ) from exc
    first = DEFAULT_STUDIO_PORT
    for candidate in range(first, first + PORT_ATTEMPTS):
        try:
            return _bind(candidate)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            if candidate + 1 < first + PORT_ATTEMPTS:
                warn(f"Port {candidate} is in use, trying {candidate + 1} instead. "
                     "Pass --port to pin a specific one.")
    raise PortInUseError(f"Ports {first}-{first + PORT_ATTEMPTS - 1} are all in use. "
                         "Pass --port to pick a free one.")
