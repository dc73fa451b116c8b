"""Every Python block of README.md and docs/*.md runs as written (those marked ``# needs:``
name what they need that CI does not have, and are skipped with that reason)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks():
    for page in PAGES:
        for k, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S)):
            yield pytest.param(block, id=f"{page.name}-{k}")


@pytest.mark.torch
@pytest.mark.parametrize("code", list(_blocks()))
def test_code_block_runs_as_written(code, tmp_path, monkeypatch):
    first = code.lstrip().splitlines()[0]
    if first.startswith("# needs:"):
        pytest.skip(first)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<readme>", "exec"), {"__name__": "__readme__"})
