"""docs/tiers.md states exactly the limits the code enforces."""

from __future__ import annotations

from pathlib import Path

import msgspec

from nextra.domain.tiers import TIERS


def limits_table() -> str:
    names = list(msgspec.structs.fields(next(iter(TIERS.values()))))
    header = "| Limit | " + " | ".join(TIERS) + " |"
    rule = "|---|" + "---|" * len(TIERS)
    rows = []
    for field in names:
        values = [getattr(limits, field.name) for limits in TIERS.values()]
        shown = ["unlimited" if v is None else f"{v:,}" for v in values]
        rows.append(f"| `{field.name}` | " + " | ".join(shown) + " |")
    return "\n".join([header, rule, *rows])


def test_the_documented_table_is_the_enforced_one(root: Path) -> None:
    page = (root / "docs" / "tiers.md").read_text()

    assert limits_table() in page, "update docs/tiers.md from nextra/domain/tiers.py"
