"""What ``--port`` and ``--cloud-port`` accept: plain decimal digits, 1-65535."""

from __future__ import annotations

import pytest

from arkor.studio.ports import parse_port


@pytest.mark.parametrize(("given", "port"), [("1", 1), ("80", 80), ("4100", 4100),
                                             ("65535", 65535)])
def test_plain_decimal_ports_are_accepted(given: str, port: int) -> None:
    assert parse_port(given) == port


@pytest.mark.parametrize("given", ["", "0", "00", "080", "65536", "99999", "+80", "-80", " 80",
                                   "80 ", "80\n", "0x50", "8_0", "1e3", "\u0668\u0660"])
def test_other_ports_are_refused(given: str) -> None:
    with pytest.raises(ValueError, match="is not a port number; give a port from 1 to 65535"):
        parse_port(given)
