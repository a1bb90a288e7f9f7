"""``arkor endpoints usage`` against a real control plane with the scripted engine: the table
and ``--json`` add up to the calls made; bad flags are refused naming the flag."""

from __future__ import annotations

import json
import time

from tests.cli.test_runs_cli import (  # noqa: F401
    Bot,
    arkor,
    backend,
    bot,
    engine,
    traffic,
    world,
)


def test_usage_counts_the_calls_in_a_table_and_as_json(arkor, bot, engine) -> None:  # noqa: F811
    traffic(arkor, bot, engine, questions=3)  # three answered, one the engine failed
    deadline = time.monotonic() + 10
    while True:
        report = json.loads(arkor("endpoints", "usage", bot.slug, "--json").stdout)
        if report["total"]["requests"] == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert report["total"]["requests"] == 4 and report["granularity"] == "hour"
    assert report["total"]["completionTokens"] == 3 * 3 + 1  # the failed call's one token
    assert report["total"]["errors"] == {"4xx": 0, "5xx": 1}
    table = arkor("endpoints", "usage", bot.slug, "--by", "day").stdout
    assert "Usage of " + bot.slug in table and "Total" in table
    keyed = json.loads(arkor("endpoints", "usage", bot.slug, "--key", bot.key_id,
                             "--json").stdout)
    assert keyed["total"]["requests"] == 4


def test_no_calls_and_bad_flags(arkor, bot) -> None:  # noqa: F811
    assert "No calls to" in arkor("endpoints", "usage", bot.slug).stdout
    refused = arkor("endpoints", "usage", bot.slug, "--by", "week", code=1)
    assert "--by must be hour or day" in refused.stderr
    refused = arkor("endpoints", "usage", bot.slug, "--since", "yesterday", code=1)
    assert "--since" in refused.stderr
