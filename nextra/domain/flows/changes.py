"""What changed between two revisions of an organism document, in words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ("describe_changes",)


def describe_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """One line per change: listeners added, removed or changed, and other keys.

    Both documents are plain data as parsed from YAML; the lines are for people
    reading a flow's revision history, not for machines.
    """
    changes: list[str] = []
    old_listeners = _listeners(before)
    new_listeners = _listeners(after)
    for name in new_listeners.keys() - old_listeners.keys():
        changes.append(f"listener {name} added")
    for name in old_listeners.keys() - new_listeners.keys():
        changes.append(f"listener {name} removed")
    for name in old_listeners.keys() & new_listeners.keys():
        old, new = old_listeners[name], new_listeners[name]
        fields = sorted(
            str(key) for key in old.keys() | new.keys() if old.get(key) != new.get(key)
        )
        if fields:
            changes.append(f"listener {name} changed: {', '.join(fields)}")
    if list(old_listeners) != list(new_listeners) and not changes:
        changes.append("listeners reordered")
    for key in sorted(str(k) for k in (before.keys() | after.keys()) - {"listeners"}):
        if before.get(key) != after.get(key):
            changes.append(f"{key} changed")
    return sorted(changes)


def _listeners(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    entries = document.get("listeners")
    if not isinstance(entries, list):
        return {}
    found: dict[str, Mapping[str, Any]] = {}
    for index, entry in enumerate(entries):
        if isinstance(entry, Mapping):
            name = str(entry.get("name", f"#{index + 1}"))
            found.setdefault(name, entry)
    return found
