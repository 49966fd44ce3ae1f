"""chart/README.md is helm-docs' rendering of the chart, as the
prometheus-community charts publish theirs: its values table comes from the
`# --` comment above each key of values.yaml, so every value must have one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from localcluster.binaries import binary

CHART = Path(__file__).resolve().parents[1] / "chart"


def rendered(chart: Path = CHART) -> str:
    result = subprocess.run(
        [binary("helm-docs"), "--chart-search-root", str(chart), "--dry-run", "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def value_rows(readme: str) -> list[list[str]]:
    """The values table's rows as cells: key, type, default, description."""
    section = readme.split("## Values", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]


def test_the_chart_readme_is_what_helm_docs_renders():
    assert (CHART / "README.md").read_text() == rendered(), "regenerate it: helm-docs --chart-search-root chart"


def test_every_value_has_a_description():
    rows = value_rows(rendered())
    assert len(rows) > 50, rows
    assert [row[0] for row in rows if not row[-1]] == []


def test_an_undescribed_value_shows_up_empty(tmp_path):
    """The check above can fail: a key added without a `# --` comment."""
    chart = tmp_path / "chart"
    subprocess.run(["cp", "-r", str(CHART), str(chart)], check=True)
    with open(chart / "values.yaml", "a") as values:
        values.write("undescribedKey: 1\n")
    rows = {row[0]: row for row in value_rows(rendered(chart))}
    assert rows["undescribedKey"][-1] == "", rows["undescribedKey"]
