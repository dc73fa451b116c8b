"""Build the DeepChem pull request from this package: generated files, patch series, check.

The PR's model and featurizer are generated from this package's source, so they cannot
drift from it: each template in ``upstream/templates`` names the package functions,
classes and methods it copies (``#@copy <module> <name> ...``); the copies are taken
from the source with :mod:`ast`, references to this package are rewritten to DeepChem's
layout, and the result is formatted with DeepChem's yapf style. The patch series is a
list of commits (``SERIES``), each a list of file operations on DeepChem's tree:
generate a file, add one from ``upstream/overlay``, or replace exact snippets in one.

Usage (from the project root; ``yapf==0.32.0`` must be importable)::

    python upstream/build.py patches --base <unpacked DeepChem tree>   # rewrite the series
    python upstream/build.py tree --base <tree> --out <dir>            # the PR's tree, built
    python upstream/build.py pr                                        # PR.md from the benchmarks
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "upstream"
PATCHES = HERE / "deepchem" / "patches"
AUTHOR = "deepchem-cgcnn developers <deepchem-cgcnn@users.noreply.github.com>"
DATE = "Thu, 26 Nov 2026 12:00:00 +0000"

# package names -> where they live in DeepChem, for docstring cross-references
RENAMES = {
    "deepchem_cgcnn.CGCNNFeaturizer": "deepchem.feat.CGCNNFeaturizer",
    "deepchem_cgcnn.CGCNNModel": "deepchem.models.CGCNNModel",
    "deepchem_cgcnn.CheckpointError": "CheckpointError",
    "deepchem_cgcnn.original.CheckpointError": "CheckpointError",
}


# ---------------------------------------------------------------- copying source
def _definitions(path: Path) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """The lines of a module and, per top-level name and ``Class.method``, its line span
    (decorators included; a constant's docstring below it included), 0-based, end exclusive."""
    text = path.read_text()
    spans: dict[str, tuple[int, int]] = {}

    def span(node: ast.AST) -> tuple[int, int]:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return first - 1, node.end_lineno or node.lineno

    body = ast.parse(text).body
    for node, after in zip(body, [*body[1:], None]):
        target = (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        )
        if isinstance(target, ast.Name):
            last = node
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                last = after  # the constant's docstring
            spans[target.id] = (span(node)[0], span(last)[1])
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            spans[node.name] = span(node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    spans[f"{node.name}.{item.name}"] = span(item)
    return text.splitlines(), spans


def copy_definitions(module: str, names: list[str]) -> str:
    """The source of ``names`` (top-level or ``Class.method``) in package file ``module``."""
    lines, spans = _definitions(ROOT / module)
    pieces = []
    for name in names:
        if name not in spans:
            raise KeyError(f"{module} defines no {name!r} (a template copies it)")
        start, end = spans[name]
        pieces.append("\n".join(lines[start:end]))
    separator = "\n\n" if all("." in n for n in names) else "\n\n\n"
    return separator.join(pieces)


def rewrite_references(source: str) -> str:
    """Point docstring references at DeepChem's names; refuse any that remain."""
    for old, new in sorted(RENAMES.items(), key=lambda item: -len(item[0])):
        source = source.replace(old, new)
    source = re.sub(r"deepchem_cgcnn\.(?:\w+\.)*(\w+)", r"\1", source)
    return source


def render(template: Path, table: str = "") -> str:
    """A template with its ``#@copy`` lines replaced by the package source, formatted."""
    out = []
    for line in template.read_text().splitlines():
        copy = re.fullmatch(r"(\s*)#@copy (\S+) (.+)", line)
        if copy:
            out.append(copy_definitions(copy.group(2), copy.group(3).split()))
        elif line.strip() == "#@table":
            out.append(table)
        else:
            out.append(line)
    return format_like_deepchem(rewrite_references("\n".join(out) + "\n"))


def format_like_deepchem(source: str) -> str:
    """yapf 0.32.0 with DeepChem's style (setup.cfg: google, indent 4)."""
    from yapf.yapflib.yapf_api import FormatCode

    formatted, _ = FormatCode(source, style_config="{based_on_style: google, indent_width: 4}")
    return formatted


def atom_table_source() -> str:
    """The CGCNN element embedding (matminer's copy of the original ``atom_init.json``) as
    92-bit hexadecimal rows; refuses a table that is not all 0/1."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from deepchem_cgcnn.elements import element_embedding_table

    table = element_embedding_table()
    rows = []
    for z in range(1, table.shape[0]):
        if np.isnan(table[z, 0]):
            continue
        bits = table[z]
        if not np.isin(bits, (0.0, 1.0)).all():
            raise ValueError(f"element {z}: the CGCNN embedding is not binary")
        value = int("".join(str(int(b)) for b in bits), 2)
        rows.append(f"    {z}: '{value:023x}',")
    return "_ATOM_FEATURE_BITS = {\n" + "\n".join(rows) + "\n}"


# ---------------------------------------------------------------- the series
@dataclass
class Commit:
    subject: str
    body: str
    generated: dict[str, Callable[[], str]] = field(default_factory=dict)
    added: dict[str, str] = field(default_factory=dict)  # DeepChem path -> overlay path
    edits: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


TEMPLATES = HERE / "templates"
FEAT = "deepchem/feat/material_featurizers"


def _series() -> list[Commit]:
    from series import SERIES  # the commits, their messages and edits

    return SERIES


def apply_commit(tree: Path, commit: Commit) -> None:
    for path, make in commit.generated.items():
        (tree / path).write_text(make())
    for path, overlay in commit.added.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / "overlay" / overlay, tree / path)
    for path, replacements in commit.edits.items():
        text = (tree / path).read_text()
        for old, new in replacements:
            if text.count(old) != 1:
                raise ValueError(f"{path}: expected one {old[:60]!r}, found {text.count(old)}")
            text = text.replace(old, new)
        (tree / path).write_text(text)


def git(tree: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "deepchem-cgcnn developers",
        "GIT_AUTHOR_EMAIL": "deepchem-cgcnn@users.noreply.github.com",
        "GIT_COMMITTER_NAME": "deepchem-cgcnn developers",
        "GIT_COMMITTER_EMAIL": "deepchem-cgcnn@users.noreply.github.com",
        "GIT_AUTHOR_DATE": DATE,
        "GIT_COMMITTER_DATE": DATE,
    }
    return subprocess.run(
        ["git", "-C", str(tree), *args], check=True, capture_output=True, text=True, env=env
    ).stdout


def build_tree(base: Path, out: Path) -> Path:
    """Copy ``base`` to ``out``, commit it, then make each commit of the series."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns(".git"))
    git(out, "init", "-q")
    git(out, "add", "-A")
    git(out, "commit", "-q", "-m", "DeepChem upstream fbe3b911 (snapshot)")
    for commit in _series():
        apply_commit(out, commit)
        git(out, "add", "-A")
        git(out, "commit", "-q", "-m", f"{commit.subject}\n\n{commit.body}")
    return out


def export_patches(tree: Path) -> list[Path]:
    if PATCHES.exists():
        shutil.rmtree(PATCHES)
    PATCHES.mkdir(parents=True)
    n = len(_series())
    git(tree, "format-patch", "-q", "--binary", "--no-signature", f"-{n}", "-o", str(PATCHES))
    return sorted(PATCHES.glob("*.patch"))


def pr_description() -> str:
    """``PR.md.tmpl`` with each ``{{name}}`` replaced by the ``<!-- pr:name -->`` block of
    docs/benchmarks.md, so the PR's numbers are the benchmarks' current ones."""
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    blocks = dict(re.findall(r"<!-- pr:([\w-]+) -->\n(.*?)<!-- /pr:\1 -->", benchmarks, re.S))

    def block(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in blocks:
            raise KeyError(f"docs/benchmarks.md has no <!-- pr:{name} --> block")
        return blocks[name].strip()

    return re.sub(r"\{\{([\w-]+)\}\}", block, (HERE / "PR.md.tmpl").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["patches", "tree", "pr"])
    parser.add_argument("--base", type=Path, help="unpacked DeepChem tree")
    parser.add_argument("--out", type=Path, help="where to build the tree (or write PR.md)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.what == "pr":
        out = args.out or HERE / "deepchem" / "PR.md"
        out.write_text(pr_description())
        print(out)
        return
    if args.base is None:
        parser.error(f"{args.what} needs --base")
    out = args.out or Path(os.environ.get("TMPDIR", "/tmp")) / "deepchem-cgcnn-pr-tree"
    tree = build_tree(args.base, out)
    if args.what == "patches":
        for patch in export_patches(tree):
            print(patch.relative_to(ROOT))
    else:
        print(tree)


if __name__ == "__main__":
    main()
