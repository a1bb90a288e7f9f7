"""Who may create an identity (``ARKOR_SIGNUP``), and how fast (``ARKOR_SIGNUP_PER_HOUR``).

The policy's default follows the bind address: ``anonymous`` on a loopback ``--host`` (a
laptop), ``invite`` on any other, where strangers may reach the server.
:func:`for_bind_address` settles it when ``arkor cloud serve`` starts and says when an
operator forces ``anonymous`` on a reachable address.

Sign-up attempts (anonymous, and invite acceptance) are rate limited per client address
(the proxy's ``X-Forwarded-For`` when it is a trusted proxy) with pyrate-limiter's GCRA:
``per_hour`` attempts at once, then one every ``3600 / per_hour`` seconds. The limiter is in
this process's memory: with N server processes, an address gets up to N times the rate.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from math import ceil
from typing import Annotated

from fastapi import Depends, Request
from pyrate_limiter import GCRA, Decision, Duration, Rate, RateItem, StateBucket

from arkor.cloud.deps import get_settings
from arkor.cloud.errors import ApiError
from arkor.cloud.settings import Settings
from arkor.contract.models import (
    SIGNUP_ANONYMOUS,
    SIGNUP_DISABLED,
    SIGNUP_INVITE,
    SignupPolicy,
)

# Addresses remembered at once; the least recently seen is forgotten first.
MAX_TRACKED_ADDRESSES = 10_000

ANONYMOUS_REFUSED = (
    "This server does not allow anonymous sign-up (ARKOR_SIGNUP={policy}). Ask its operator "
    "for an invite code and run `arkor login --invite CODE`, or for a personal access token "
    "and run `arkor login --token TOKEN`."
)
INVITES_REFUSED = (
    "This server does not allow sign-up (ARKOR_SIGNUP=disabled). Ask its operator to create "
    "your user (`arkor cloud users create EMAIL`) and give you its token, then run "
    "`arkor login --token TOKEN`."
)
TOO_MANY = "Too many sign-up attempts from your address. Try again in {seconds} s."


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def for_bind_address(settings: Settings, host: str) -> tuple[Settings, str | None]:
    """``settings`` with the policy settled for serving on ``host``, and a warning to show
    when anonymous sign-up is forced on an address strangers may reach."""
    if settings.signup is None:
        policy = SIGNUP_ANONYMOUS if is_loopback(host) else SIGNUP_INVITE
        return replace(settings, signup=policy), None
    if settings.signup == SIGNUP_ANONYMOUS and not is_loopback(host):
        return settings, (
            f"ARKOR_SIGNUP=anonymous on {host}: anyone who reaches this server can create "
            "an identity, then projects, deployments and training jobs. Use "
            "--signup invite (the default off loopback) unless this network is trusted."
        )
    return settings, None


def policy(settings: Settings) -> SignupPolicy:
    if settings.signup == SIGNUP_INVITE:
        return SIGNUP_INVITE
    if settings.signup == SIGNUP_DISABLED:
        return SIGNUP_DISABLED
    return SIGNUP_ANONYMOUS


class SignupLimiter:
    """Per-address sign-up budget: GCRA state per address, in an LRU of bounded size."""

    def __init__(self, per_hour: int, *, max_addresses: int = MAX_TRACKED_ADDRESSES) -> None:
        self._rates = [Rate(per_hour, Duration.HOUR)]
        self._max = max_addresses
        self._buckets: OrderedDict[str, StateBucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str) -> int:
        """Spend one attempt for ``address``: 0 when allowed, else the seconds to wait."""
        with self._lock:
            bucket = self._buckets.pop(address, None)
            if bucket is None:
                bucket = StateBucket(self._rates, algorithm=GCRA())
            self._buckets[address] = bucket
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            decision = bucket.put_decision(RateItem(address, int(time.time() * 1000)))
        if not isinstance(decision, Decision):  # an in-memory bucket answers at once
            raise TypeError("the sign-up limiter needs an in-memory bucket")
        if decision.allowed:
            return 0
        wait_ms = decision.retry_after_ms or 1000
        return max(1, ceil(wait_ms / 1000))


def get_signup_limiter(request: Request) -> SignupLimiter:
    return request.app.state.signup_limiter  # type: ignore[no-any-return]


def rate_limited(request: Request,
                 limiter: Annotated[SignupLimiter, Depends(get_signup_limiter)]) -> None:
    """Route dependency: one sign-up attempt for the caller's address, or 429."""
    address = request.client.host if request.client else "unknown"
    wait = limiter.check(address)
    if wait:
        raise ApiError(429, TOO_MANY.format(seconds=wait), headers={"Retry-After": str(wait)})


def allow_anonymous(request: Request) -> None:
    current = policy(get_settings(request))
    if current == SIGNUP_DISABLED:
        raise ApiError(403, INVITES_REFUSED)  # an invite would be refused too
    if current != SIGNUP_ANONYMOUS:
        raise ApiError(403, ANONYMOUS_REFUSED.format(policy=current))


def allow_invites(request: Request) -> None:
    if policy(get_settings(request)) == SIGNUP_DISABLED:
        raise ApiError(403, INVITES_REFUSED)


AnonymousSignup = [Depends(allow_anonymous), Depends(rate_limited)]
InviteSignup = [Depends(allow_invites), Depends(rate_limited)]
