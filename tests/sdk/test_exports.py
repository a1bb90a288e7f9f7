"""The SDK's public surface is exactly ``arkor.__all__``, sorted."""

from __future__ import annotations

import types

import arkor
import arkor.sdk


def test_all_is_sorted_and_complete() -> None:
    public = sorted(name for name, value in vars(arkor).items()
                    if not name.startswith("_") and not isinstance(value, types.ModuleType))
    # isort order, as ruff keeps it: CONSTANTS, then Classes, then functions.
    def isort_key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert arkor.__all__ == sorted(arkor.__all__, key=isort_key)
    assert sorted(arkor.__all__) == public
    assert arkor.__all__ == arkor.sdk.__all__


def test_the_names_the_issue_promises() -> None:
    for name in ("CloudApiClient", "AsyncCloudApiClient", "CloudApiError", "ensure_credentials",
                 "default_arkor_cloud_api_url"):
        assert name in arkor.__all__
