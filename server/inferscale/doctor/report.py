"""The doctor's findings as text for people, or JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict

from .pipeline import LINKS, Finding


def healthy(findings: list[Finding]) -> bool:
    return len(findings) == len(LINKS) and all(f.ok for f in findings)


def as_json(release: str, namespace: str, findings: list[Finding], budget: dict[str, str]) -> str:
    return json.dumps(
        {
            "release": release,
            "namespace": namespace,
            "healthy": healthy(findings),
            "links": [asdict(f) for f in findings],
            "unchecked": [link for link, _ in LINKS[len(findings) :]],
            "budget": budget,
        },
        indent=2,
    )


def as_text(release: str, namespace: str, findings: list[Finding], budget: dict[str, str]) -> str:
    width = max(len(link) for link, _ in LINKS)
    lines = [f"inferscale doctor: release {release} in namespace {namespace}", ""]
    for finding in findings:
        lines.append(f"  {'ok  ' if finding.ok else 'FAIL'}  {finding.link:<{width}}  {finding.detail}")
        if finding.fix:
            lines.append(f"        {'':<{width}}  fix: {finding.fix}")
    for link, _ in LINKS[len(findings) :]:
        lines.append(f"  --    {link:<{width}}  not checked: an earlier link is broken")
    lines += ["", "reaction-time budget (what the installed values allow):"]
    lines += [f"  {name}: {value}" for name, value in budget.items()]
    lines += ["", "healthy" if healthy(findings) else f"broken at: {findings[-1].link}"]
    return "\n".join(lines)
