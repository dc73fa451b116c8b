#!/usr/bin/env bash
# The DeepChem pull request, proven against DeepChem's own tree (upstream/README.md):
#  1. the patch series applies with `git am` to the snapshot of DeepChem's repository;
#  2. regenerating it from this package gives the same files and PR.md (no drift;
#     `bash upstream/check.sh --refresh` rewrites both);
#  3. the patched tree, installed (not editable) into a throwaway virtualenv, passes DeepChem's
#     own CGCNN and materials-featurizer tests, the PR's tests and its doctests;
#  4. yapf 0.32.0 (--diff), flake8 and mypy (DeepChem's setup.cfg) are clean on the touched files;
#  5. the original CGCNN checkpoints, through the patched DeepChem, reproduce the original code.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
snapshot=${DEEPCHEM_SNAPSHOT:-../shared/deepchem-upstream/deepchem-fbe3b91.tar.gz}
if [ ! -f "$snapshot" ]; then
    if [ -n "${CI:-}" ] && [ -z "${DEEPCHEM_CGCNN_SHARED:-}" ]; then
        echo "upstream: no DeepChem snapshot at $snapshot (CI expects ../shared)"; exit 1
    fi
    echo "upstream: skipped, no DeepChem snapshot at $snapshot"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME="deepchem-cgcnn CI" GIT_AUTHOR_EMAIL="ci@deepchem-cgcnn.invalid"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"

# A throwaway virtualenv on top of the project's pinned stack (CPU torch, NumPy 2, pymatgen,
# rdkit: DeepChem's own pins, numpy<2 among them, are not installed: --no-deps), plus the
# linters of DeepChem's PR template and transformers, which deepchem.models.torch_models
# imports unconditionally at this commit (without it no torch model, CGCNN included, loads).
python3 -m venv "$work/venv"
venv="$work/venv/bin"
stack=$("$python" -c "import site; print(site.getsitepackages()[0])")
"$venv/python" -c "import site; print(site.getsitepackages()[0])" | xargs -I{} sh -c "echo '$stack' > {}/project-stack.pth"
"$venv/pip" install -q --disable-pip-version-check yapf==0.32.0 flake8 wheel transformers 2>&1 | grep -v "^WARNING: Location" || true

if [ "${1:-}" = "--refresh" ]; then  # (--bench N: time the PR's featurizer, then stop)  # rewrite the series and PR.md from the package, then check
    mkdir "$work/fresh"
    tar xzf "$snapshot" -C "$work/fresh"
    "$venv/python" upstream/build.py patches --base "$work/fresh" --out "$work/fresh-tree" > /dev/null 2>&1
    "$venv/python" upstream/build.py pr > /dev/null
    echo "upstream: series and PR.md rewritten"
fi

echo "== upstream: git am"
mkdir "$work/base"
tar xzf "$snapshot" -C "$work/base"
cp -r "$work/base" "$work/pr"
git -C "$work/pr" init -q
git -C "$work/pr" add -A
git -C "$work/pr" commit -q -m "DeepChem upstream fbe3b911 (snapshot)"
git -C "$work/pr" am -q "$root"/upstream/deepchem/patches/*.patch
git -C "$work/pr" log --oneline --no-decorate -n "$(ls upstream/deepchem/patches/*.patch | wc -l)" | sed 's/^/  /'
touched=$(git -C "$work/pr" diff --name-only HEAD~"$(ls upstream/deepchem/patches/*.patch | wc -l)" -- '*.py')
echo "  $(git -C "$work/pr" diff --shortstat HEAD~"$(ls upstream/deepchem/patches/*.patch | wc -l)")"

echo "== upstream: regenerated from the package = the committed series"
stale="the committed series or PR.md is stale: rewrite them with: bash upstream/check.sh --refresh"
"$venv/python" upstream/build.py tree --base "$work/base" --out "$work/built" > /dev/null 2>&1
diff -r -q --exclude=.git "$work/built" "$work/pr" || { echo "  $stale"; exit 1; }
"$venv/python" upstream/build.py pr --out "$work/PR.md" > /dev/null
diff -q "$work/PR.md" upstream/deepchem/PR.md || { echo "  $stale"; exit 1; }
echo "  same files, same PR.md"

echo "== upstream: install (not editable)"
"$venv/pip" install -q --no-deps --no-build-isolation "$work/pr" 2>&1 | grep -v "^WARNING: Location" || true

if [ "${1:-}" = "--bench" ]; then  # the PR's featurizer against the one it replaces
    data=../shared/datasets/mp_cgcnn.csv.gz
    [ -f "$data" ] || data=tests/data/datasets/mp_cgcnn_first400.csv.gz
    (cd "$work" && PYTHONWARNINGS=ignore "$venv/python" "$root/upstream/bench_featurizer.py" \
        "$work/base" "$root/$data" "${2:-500}" 2>&1 | grep -v "normalization\|Skipped\|cannot import")
    exit 0
fi

echo "== upstream: tests"
cd "$work/pr"
tests=(deepchem/models/tests/test_cgcnn.py deepchem/feat/tests/test_materials_featurizers.py
       deepchem/feat/tests/test_cgcnn_featurizer.py deepchem/models/tests/test_cgcnn_original.py
       deepchem/molnet/tests/test_cgcnn_split.py)
"$venv/python" -m pytest -p no:cacheprovider --import-mode=importlib -W ignore::UserWarning \
    -o console_output_style=count "${tests[@]}" > "$work/tests.log" 2>&1 || { cat "$work/tests.log"; exit 1; }
grep -E "^deepchem/\S+\.py [.FsxE]+|^=+ .*(passed|failed)" "$work/tests.log" | sed 's/^/  /'
modules=(deepchem.feat.material_featurizers.cgcnn_featurizer deepchem.feat.material_featurizers.cgcnn_atom_init
         deepchem.models.torch_models.cgcnn deepchem.molnet.load_function.molnet_loader)
(cd "$work" && "$venv/python" -m pytest -q -p no:cacheprovider --doctest-modules --pyargs "${modules[@]}" 2>&1 | tail -n 1 | sed 's/^/  doctests: /')

echo "== upstream: yapf 0.32.0, flake8, mypy (DeepChem's setup.cfg) on the touched files"
# shellcheck disable=SC2086
"$venv/yapf" --diff --style setup.cfg $touched && echo "  yapf: no changes"
# shellcheck disable=SC2086
echo "  flake8: $("$venv/flake8" --count $touched) errors"
# shellcheck disable=SC2086
"$root/$python" -m mypy --config-file setup.cfg --follow-imports=silent $touched | sed 's/^/  mypy: /'

echo "== upstream: the original checkpoints through the patched DeepChem"
cd "$root"
checkpoints=../shared/cgcnn-pretrained
reference=../shared/cgcnn-reference
[ -d "$checkpoints" ] || checkpoints=tests/data/cgcnn-pretrained
[ -d "$reference" ] || reference=tests/data/cgcnn-reference
(cd "$work" && PYTHONWARNINGS=ignore "$venv/python" "$root/upstream/parity.py" "$root/$checkpoints" "$root/$reference" 2>&1 | grep -v "normalization\|Skipped\|cannot import" | sed 's/^/  /')
