"""The README's and the docs pages' commands: each is run by scripts/check_readme.sh or skipped there with a reason."""

from __future__ import annotations

import os
import subprocess

from helpers import REPO


def test_every_readme_and_docs_command_is_run_or_skipped_with_a_reason_by_the_check_script() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "check_readme.sh")],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "LIST_ONLY": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "README commands are listed" in result.stdout
    assert "docs commands are listed" in result.stdout
