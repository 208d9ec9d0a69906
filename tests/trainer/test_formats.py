"""The shared formats of trainer.timestamps and trainer.jsontypes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from trainer.jsontypes import json_type
from trainer.timestamps import is_utc_iso, parse_utc, utc_now_iso


def test_utc_now_iso_is_iso_8601_utc_to_the_second() -> None:
    now = utc_now_iso()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", now)
    parsed = parse_utc(now)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - parsed) < timedelta(minutes=1)


def test_precise_utc_now_iso_has_microseconds_and_sorts_by_time() -> None:
    first = utc_now_iso(precise=True)
    later = utc_now_iso(precise=True)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", first)
    assert first <= later
    assert parse_utc(later) >= parse_utc(first)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2026-11-22T03:15:00Z", True),
        ("2026-11-22T03:15:00.123456Z", True),
        ("2026-11-22T03:15:00+00:00", True),
        ("2026-11-22T03:15:00+01:00", False),  # an offset, but not UTC
        ("2026-11-22T03:15:00", False),  # no offset at all
        ("yesterday", False),
        (20261122, False),
        (None, False),
    ],
)
def test_is_utc_iso(value: object, ok: bool) -> None:
    assert is_utc_iso(value) is ok


def test_parse_utc_refuses_a_time_without_an_offset() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_utc("2026-11-22T03:15:00")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (5, "the number 5"),
        (2.5, "the number 2.5"),
        (10**30, "the number 10000000000000000000..."),
        ("abc", "the string 'abc'"),
        ("x" * 30, "the string 'xxxxxxxxxxxxxxxxxxxx'..."),
        ([1, 2, 3], "an array of 3"),
        ({"a": 1}, "an object"),
    ],
)
def test_json_type_names_a_value_as_messages_show_it(value: object, name: str) -> None:
    assert json_type(value) == name


def test_json_type_of_an_int_too_long_to_print() -> None:
    assert json_type(10**5000) == "a number"
