"""What a test does when something it needs is missing: skip on a developer's machine, fail under
CI (CI=true), where .ci/run installs everything the suite needs."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str, fix: str) -> NoReturn:
    """Skip with ``reason``, or under CI fail with it and what .ci/run should have done."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run should have {fix})")
    pytest.skip(reason)
