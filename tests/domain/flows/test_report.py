"""Compiler-style report lines for the CLI."""

from __future__ import annotations

from nextra.domain.flows import (
    Issue,
    ValidationReport,
    format_issue,
    format_report,
    validate_organism,
)


def test_an_issue_with_everything() -> None:
    issue = Issue(
        severity="error",
        code="peers-not-a-list",
        message="'peers' of listener 'b' must be a list.",
        line=14,
        column=12,
        listener="b",
        field="listeners[1].peers",
    )

    assert format_issue(issue, "organism.yaml") == (
        "organism.yaml:14:12: error: 'peers' of listener 'b' must be a list. "
        "[b, listeners[1].peers] (peers-not-a-list)"
    )


def test_an_issue_without_position_or_context() -> None:
    issue = Issue(severity="error", code="yaml-too-large", message="Too big.")

    assert format_issue(issue, "f.yaml") == "f.yaml: error: Too big. (yaml-too-large)"


def test_a_report_lists_issues_in_source_order_then_a_summary() -> None:
    text = (
        "organism: {name: demo}\n"
        "foo: 1\n"
        "listeners:\n"
        "  - name: a\n"
        "    payload_class: TextInput\n"
        "    handler: llm\n"
        "    description: A.\n"
    )

    lines = format_report(validate_organism(text), "flow.yaml").splitlines()

    assert [line.split(": ")[0:2] for line in lines[:-1]] == [
        ["flow.yaml:2:1", "warning"],
        ["flow.yaml:6:14", "error"],
    ]
    assert lines[-1] == "flow.yaml: invalid (1 error, 1 warning)"


def test_a_clean_report() -> None:
    report = ValidationReport(organism=None)

    assert format_report(report, "f.yaml") == "f.yaml: valid (0 errors, 0 warnings)"
