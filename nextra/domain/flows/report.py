"""Validation reports as compiler-style lines, for the CLI and for logs of tests."""

from __future__ import annotations

from nextra.domain.flows.model import Issue, ValidationReport

__all__ = ("format_issue", "format_report")


def format_issue(issue: Issue, filename: str) -> str:
    """One issue as ``file:line:col: severity: message [listener, field] (code)``.

    The line and column are left out when unknown, and the bracket when the issue
    names neither a listener nor a field. The code at the end is the one listed
    in docs/flows.md.

    Args:
        issue: The issue to show.
        filename: The name to print for the file.

    Returns:
        A single line of text.
    """
    where = filename
    if issue.line is not None:
        where += f":{issue.line}"
        if issue.column is not None:
            where += f":{issue.column}"
    context = [part for part in (issue.listener, issue.field) if part]
    suffix = f" [{', '.join(context)}]" if context else ""
    message = " ".join(issue.message.split())
    return f"{where}: {issue.severity}: {message}{suffix} ({issue.code})"


def format_report(report: ValidationReport, filename: str) -> str:
    """Every issue of a report, one per line in source order, then a summary line.

    Args:
        report: What ``validate_organism`` returned.
        filename: The name to print for the file.

    Returns:
        The lines joined with newlines, without a trailing newline.
    """
    lines = [format_issue(issue, filename) for issue in report.issues]
    errors, warnings = len(report.errors), len(report.warnings)
    verdict = "valid" if report.ok else "invalid"
    summary = (
        f"{filename}: {verdict} ({errors} {_plural(errors, 'error')}, "
        f"{warnings} {_plural(warnings, 'warning')})"
    )
    lines.append(summary)
    return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
