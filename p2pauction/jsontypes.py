"""The types of plain JSON data, for every ``to_json()`` (a leaf module: it imports nothing)."""

from __future__ import annotations

__all__ = ["JSONObject", "JSONValue"]

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]
JSONObject = dict[str, JSONValue]
