"""Every tutorial in docs/tutorials runs as written: its Python and bash blocks, in order, in
one namespace, from a scratch folder that sees the repository's ``tests/data`` fixtures
(no ../shared)."""

import re
from pathlib import Path

import pytest
from conftest import run_shell

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)


def blocks(page: Path) -> list[tuple[str, str]]:
    """The runnable (language, code) blocks of a page, in order."""
    return BLOCK.findall(page.read_text())


def test_every_tutorial_is_in_the_docs_and_has_code():
    index = (ROOT / "docs" / "index.md").read_text()
    assert TUTORIALS
    for page in TUTORIALS:
        assert f"tutorials/{page.stem}\n" in index, page.name
        assert any(language == "python" for language, _ in blocks(page)), page.name


@pytest.mark.torch
@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_as_written(page, tmp_path, monkeypatch):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__tutorial__"}
    for k, (language, code) in enumerate(blocks(page)):
        if language == "python":
            exec(compile(code, f"<{page.name} block {k}>", "exec"), namespace)
            continue
        run = run_shell(code, tmp_path)
        assert run.returncode == 0, f"{page.name} block {k}:\n{code}\n{run.stdout}\n{run.stderr}"
