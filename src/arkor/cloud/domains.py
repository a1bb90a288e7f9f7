"""Custom domains' DNS challenge: the TXT lookup, and the periodic re-check of every domain.

A domain is verified while a TXT record ``_arkor-challenge.<domain>`` holds its token. The
lookup uses ``ARKOR_DNS_NAMESERVERS`` (else the system resolver) and gives up after
``ARKOR_DNS_TIMEOUT_S``, tries included, so a dead resolver never holds a request for long.
Its outcome is one of three: found (verified), definitely not there (NXDOMAIN, no TXT
record, or none holding the token: unverified), or the lookup failed (timeout, no name
server answered: the domain keeps its state and the error is recorded).

:class:`DomainChecker` re-checks each domain every ``ARKOR_DOMAIN_CHECK_INTERVAL_S``: a
pending domain whose record appeared becomes verified, a verified one whose record is gone
stops being served. With several servers on one PostgreSQL an advisory lock lets one of them
check at a time; when each domain was last checked is in the database, so none is checked
twice in an interval.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import dns.exception
import dns.nameserver
import dns.resolver

from arkor.cloud.settings import Settings, split_nameserver
from arkor.contract.domains import NO_CHALLENGE_RECORD, challenge_record
from arkor.store import domains
from arkor.store.db import Database
from arkor.store.tables import CustomDomain, utcnow

log = logging.getLogger("arkor.domains")
LOCK_KEY = 0x61726B6F72 + 1  # the run sweep's key + 1: the advisory lock of the domain checks
BATCH = 100


@dataclass(frozen=True)
class Check:
    """A lookup's outcome: ``found`` True (the token is there), False (it is not), or None
    (the lookup failed; ``error`` says how)."""

    found: bool | None
    error: str | None = None


class ChallengeResolver:
    def __init__(self, nameservers: tuple[str, ...] = (), *, timeout_s: float = 3.0) -> None:
        self.nameservers = tuple(split_nameserver(n) for n in nameservers)
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> ChallengeResolver:
        return cls(settings.dns_nameservers, timeout_s=settings.dns_timeout_s)

    @property
    def described(self) -> str:
        if not self.nameservers:
            return "the system resolver"
        return ", ".join(f"{host}:{port}" for host, port in self.nameservers)

    def _resolver(self) -> dns.resolver.Resolver:
        if self.nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)
                                    for host, port in self.nameservers]
        else:
            resolver = dns.resolver.Resolver()
        resolver.timeout = resolver.lifetime = self.timeout_s
        return resolver

    def check(self, domain: str, token: str) -> Check:
        """Whether a TXT record ``_arkor-challenge.<domain>`` holds ``token`` (blocking, at
        most about ``timeout_s``)."""
        record = challenge_record(domain)
        try:
            answer = self._resolver().resolve(record, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Check(False, NO_CHALLENGE_RECORD.format(record=record))
        except dns.exception.Timeout:
            return Check(None, f"The DNS lookup of {record} timed out after "
                               f"{self.timeout_s:g} s ({self.described}; ARKOR_DNS_TIMEOUT_S); "
                               "try again shortly")
        except dns.resolver.NoNameservers:
            return Check(None, f"No name server could answer for {record} ({self.described}; "
                               "ARKOR_DNS_NAMESERVERS); try again shortly")
        except dns.exception.DNSException as exc:
            return Check(None, f"The DNS lookup of {record} failed ({self.described}): {exc}")
        values = {b"".join(rdata.strings).decode("utf-8", "replace").strip()
                  for rdata in answer}
        if token in values:
            return Check(True)
        return Check(False, f"The TXT record {record} holds {len(values)} value(s), none of "
                            "them this domain's token")


def check_and_record(db: Database, resolver: ChallengeResolver, domain: str, token: str,
                     now: datetime | None = None) -> Check:
    """Look the challenge up (no database session held meanwhile), then write the outcome,
    unless the domain was removed or re-added in between."""
    outcome = resolver.check(domain, token)
    with db.session() as session:
        row = session.get(CustomDomain, domain)
        if row is not None and row.token == token:
            was_verified = row.verified_at is not None
            domains.record_check(session, row, found=outcome.found, error=outcome.error,
                                 now=now)
            if was_verified and outcome.found is False:
                log.warning("custom domain %s: its TXT record is gone; no longer served",
                            domain)
            elif not was_verified and outcome.found:
                log.info("custom domain %s verified", domain)
    return outcome


class DomainChecker:
    """The periodic re-check (a thread, started with the app; off when the interval is 0)."""

    def __init__(self, db: Database, resolver: ChallengeResolver, *, interval_s: float) -> None:
        self.db = db
        self.resolver = resolver
        self.interval = timedelta(seconds=interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.interval:
            return
        self._thread = threading.Thread(target=self._loop, name="arkor-domain-checks",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def sweep(self, now: datetime | None = None) -> int | None:
        """Check every domain not checked within the interval before ``now``; how many were
        checked, or None when another server holds the checks."""
        now = now or utcnow()
        checked = 0
        with self.db.turn(LOCK_KEY) as mine:
            if not mine:
                return None
            seen: set[str] = set()
            while not self._stop.is_set():
                with self.db.session() as session:
                    batch = [(d, t) for d, t in domains.due_for_check(
                        session, now - self.interval, BATCH) if d not in seen]
                for domain, token in batch:
                    if self._stop.is_set():
                        break
                    seen.add(domain)
                    check_and_record(self.db, self.resolver, domain, token, now=now)
                    checked += 1
                if len(batch) < BATCH:
                    break
        return checked

    def _loop(self) -> None:
        wake = min(max(self.interval.total_seconds() / 4, 1.0), 60.0)
        while not self._stop.wait(wake):
            try:
                self.sweep()
            except Exception:
                log.exception("custom domain checks failed")
