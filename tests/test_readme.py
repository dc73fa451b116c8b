"""Every Python and bash block of README.md and docs/*.md runs as written (those marked
``# needs:`` name what they need that CI does not have or cannot afford, and are skipped with
that reason)."""

import re
from pathlib import Path

import pytest
from conftest import run_shell

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


def _bash_blocks(runnable: bool):
    for page in PAGES:
        for k, block in enumerate(re.findall(r"```bash\n(.*?)```", page.read_text(), re.S)):
            if block.startswith("# needs:") != runnable:
                yield pytest.param(block, id=f"{page.name}-bash-{k}")


def test_every_shell_block_that_ci_cannot_run_says_what_it_needs():
    """A block is run below unless its first line is ``# needs: <reason>``."""
    reasons = [block.values[0].splitlines()[0] for block in _bash_blocks(runnable=False)]
    assert all(len(reason) > len("# needs: ") + 10 for reason in reasons)
    assert list(_bash_blocks(runnable=True)), "no shell block of README.md or docs/ runs in CI"


@pytest.mark.torch
@pytest.mark.parametrize("code", list(_bash_blocks(runnable=True)))
def test_shell_block_runs_as_written(code, tmp_path):
    run = run_shell(code, tmp_path)
    assert run.returncode == 0, f"{code}\n{run.stdout}\n{run.stderr}"
