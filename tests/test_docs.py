"""The documentation a newcomer reads from a fresh clone: every relative link
lands on a file of the repository and, with an anchor, on a heading of it;
nothing points outside the repository; the README starts with the two
commands, and CI runs the second."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [REPO / "README.md", REPO / "bench" / "README.md", REPO / "chart" / "README.md", *(REPO / "docs").glob("*.md")]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """`text` without its fenced code blocks, where brackets are code."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(match) for match in re.findall(r"^#+ (.+)$", prose(page.read_text()), re.M)}


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_lands_on_a_file_and_heading_of_the_repository(page):
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        assert destination.is_relative_to(REPO), f"{page.name} links outside the repository: {target}"
        assert destination.exists(), f"{page.name} links a missing file: {target}"
        if fragment:
            assert fragment in anchors(destination), f"{page.name} links a missing heading: {target}"


def test_the_anchor_rule_matches_githubs_for_the_headings_we_link():
    assert anchor("When the HPA shows `<unknown>` or does not scale: `inferscale doctor`") == (
        "when-the-hpa-shows-unknown-or-does-not-scale-inferscale-doctor"
    )
    assert anchor("Can the duration signal alone meet the goals? `make bench-tune`") == (
        "can-the-duration-signal-alone-meet-the-goals-make-bench-tune"
    )


def test_the_docs_index_links_every_page():
    linked = {(REPO / target.partition("#")[0]).resolve() for target in relative_links(REPO / "README.md")}
    assert set(PAGES) - {REPO / "README.md"} <= linked, set(PAGES) - linked


def test_the_readme_starts_with_the_demo_and_the_test_command_ci_runs():
    first_block = re.search(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make demo", "make test"], commands
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith("exec make test")


def test_the_design_page_maps_every_server_module():
    """The code map in docs/design.md names every module of server/inferscale by
    its path in the package (`doctor/hpa.py`, not `hpa.py`): a name that two
    packages share is not mapped by one mention."""
    design = (REPO / "docs" / "design.md").read_text()
    package = REPO / "server" / "inferscale"
    modules = sorted(path.relative_to(package).as_posix() for path in package.rglob("*.py"))
    unmapped = [module for module in modules if not module.endswith("__init__.py") and f"`{module}`" not in design]
    assert unmapped == []
