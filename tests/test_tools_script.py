"""ci/tools.sh as users run it: twice, with its own bin directory already on
PATH, as its output tells them to put it. Every link it makes to a program a
Debian package installed must point at that program, never at itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_links_point_at_real_programs_whatever_path_holds(tmp_path):
    bin_dir = tmp_path / "bin"
    env = {**os.environ, "INFERSCALE_CACHE": str(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for _ in range(2):
        result = subprocess.run(
            ["bash", str(ROOT / "ci" / "tools.sh"), "wrk", "tcpdump"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        # The advice that puts the bin directory on PATH, which the second run already has.
        assert result.stdout.strip() == f'export PATH="{bin_dir}:$PATH"'
    links = sorted(bin_dir.iterdir())
    assert [link.name for link in links] == ["tcpdump", "wrk"]
    for link in links:
        target = link.resolve(strict=True)
        assert target.parent != bin_dir and target.is_file() and os.access(target, os.X_OK), (link, target)
    # wrk prints its version with its usage, and exits 1.
    assert "4.1.0" in subprocess.run([bin_dir / "wrk", "--version"], capture_output=True, text=True).stdout
    assert (
        "tcpdump version 4.99.3"
        in subprocess.run([bin_dir / "tcpdump", "--version"], capture_output=True, text=True).stdout
    )
