"""docs/flows.md stays true: its example validates and it explains every issue code."""

from __future__ import annotations

import re

from nextra.domain.flows import ISSUE_CODES, format_report, validate_organism
from nextra.kernel.settings import project_root

DOC = (project_root() / "docs" / "flows.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = DOC.index(f"### {title}\n")
    end = DOC.find("\n## ", start)
    return DOC[start:end] if end != -1 else DOC[start:]


def test_the_example_is_a_valid_hosted_flow_without_warnings() -> None:
    example = re.search(r"```yaml\n(.*?)```", DOC, re.S)
    assert example is not None

    report = validate_organism(example.group(1))

    assert report.ok, format_report(report, "docs/flows.md")
    assert report.warnings == ()


def test_the_sample_output_is_what_the_validator_prints() -> None:
    example = re.search(r"```yaml\n(.*?)```", DOC, re.S)
    assert example is not None
    text = example.group(1).replace("[answerer, calculator]", "[answrer, calculator]")

    printed = format_report(validate_organism(text), "organism.yaml")

    assert f"```\n{printed}\n```" in DOC


def test_every_issue_code_is_documented_with_its_severity() -> None:
    documented = {
        severity: set(re.findall(r"^\| `([a-z-]+)` \|", _section(title), re.M))
        for severity, title in (("error", "Errors"), ("warning", "Warnings"))
    }

    for code, severity in ISSUE_CODES.items():
        assert code in documented[severity], code
    assert documented["error"] | documented["warning"] == set(ISSUE_CODES)
