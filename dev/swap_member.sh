#!/usr/bin/env bash
# Swap one member of the shipped mp-formation-energy ensemble for a finished refit, by the rule
# written down before the first swap (docs/benchmarks.md, "The rule for that swap"):
#   1. the refit's validated run beat the member's validated run on validation
#      (the cards' metrics.mae_before_refit.valid), and
#   2. the refit passes the trust check: all 69 elemental ground states flagged, none silent.
# Test scores are then measured and reported whichever way they go; they decide nothing.
# Then: ship it, record its test predictions, score the six with the kept sigma scale (the first member's card), check the
# ensemble on the elemental ground states, and re-record the shipped predictions the tests assert.
#
# Usage: bash dev/swap_member.sh JOB MEMBER
#   e.g. bash dev/swap_member.sh mp-formation-energy-l1.3-e346 .3
# JOB's refit must be finished (work/export-refit/JOB.pt); MEMBER is "" (the first) or .1 ... .5.
set -euo pipefail
cd "$(dirname "$0")/.."
job=${1:?usage: dev/swap_member.sh JOB MEMBER}
member=${2?usage: dev/swap_member.sh JOB MEMBER}
shipped=mp-formation-energy$member
tag=${job#mp-formation-energy-}
today=$(date -u +%F)
py=.venv/bin/python
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
elemental=benchmarks/results/elemental

$py - "$job" "$shipped" <<'EOF'
import json, sys
job, shipped = sys.argv[1:]
candidate = json.load(open(f"work/export-refit/{job}.json"))["metrics"]["mae_before_refit"]["valid"]
bar = json.load(open(f"deepchem_cgcnn/pretrained/{shipped}.json"))["metrics"]["mae_before_refit"]["valid"]
print(f"rule 1: validation {candidate:.4f} against {shipped}'s {bar:.4f}")
sys.exit(0 if candidate < bar else f"{job} does not beat {shipped} on validation: not shipped")
EOF

$py dev/train_models.py --park "$job"
$py benchmarks/elemental_check.py --models "work/export-refit/$job.pt" \
  --out "$elemental/elemental-ground-states-$tag-refit-$today.json"
$py - "$elemental/elemental-ground-states-$tag-refit-$today.json" <<'EOF'
import json, sys
(check,) = json.load(open(sys.argv[1])).values()
print(f"rule 2: {check['crystals']} crystals, MAE {check['mae']:.3f}, "
      f"{check['flagged']} flagged, {len(check['silent_misses'])} silent")
sys.exit(0 if check["flagged"] == check["crystals"] == 69 and not check["silent_misses"]
         else "the trust check fails: not shipped")
EOF

$py dev/ship_models.py "$job" --export work/export-refit --as "$shipped"
$py benchmarks/ensemble_study.py --members "deepchem_cgcnn/pretrained/$shipped.pt" \
  --cache-dir work/cache --save-predictions benchmarks/results/ensemble/predictions/
scale=$($py -c 'import json; print(json.load(open("deepchem_cgcnn/pretrained/mp-formation-energy.json"))["ensemble"]["std_scale"])')
$py benchmarks/ensemble_study.py --members \
  benchmarks/results/ensemble/predictions/mp-formation-energy{,.1,.2,.3,.4,.5}.predictions.npz \
  --std-scale "$scale" --out "benchmarks/results/ensemble/ensemble-mpfe-shipped-six-$tag.json"
$py benchmarks/elemental_check.py --models mp-formation-energy \
  --out "$elemental/elemental-ground-states-six-$tag-$today.json"
$py dev/record_shipped_predictions.py
echo "shipped $job as $shipped"
