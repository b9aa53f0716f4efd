"""benchmarks/RESULTS.md is exactly the concatenation of the result pages the benchmark scripts
wrote, and every page says where, how and when it was measured."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "benchmarks" / "results").glob("*.md"))


def test_results_md_is_current():
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "collect.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_page_names_machine_command_and_date():
    assert PAGES
    for page in PAGES:
        text = page.read_text()
        assert re.search(r"20\d\d-\d\d-\d\d", text), f"{page.name}: no date"
        assert "benchmarks/" in text and "python" in text, f"{page.name}: no command"
        assert re.search(r"(?i)machine|cpu|core", text), f"{page.name}: no machine"
