"""How messages name a parsed JSON value: ``got the string 'abc'``, ``got an array of 3``.

Used by every message about a JSON document, an artifact's meta and a request body alike, so a
caller reads the same words for the same mistake.
"""

from __future__ import annotations

__all__ = ["SHOWN", "json_type", "shorten"]

SHOWN = 20  # characters of a string or number a message repeats


def shorten(text: str) -> str:
    """``text`` as a message repeats it: its first 20 characters, then ``...`` if there is more."""
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}..."


def json_type(value: object) -> str:
    """``null``, ``true``, ``false``, ``the number 5``, ``the string 'abc'``, ``an array of 3``,
    ``an object``; long strings and numbers are cut to 20 characters."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            text = str(value)
        except ValueError:  # an int past Python's 4300-digit limit for str()
            return "a number"
        return f"the number {shorten(text)}"
    if isinstance(value, str):
        return f"the string {value[:SHOWN]!r}" + ("..." if len(value) > SHOWN else "")
    if isinstance(value, list | tuple):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
