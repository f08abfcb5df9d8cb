#!/usr/bin/env bash
# The README's main job on an embedded default (nothing to download): generate the synthetic
# ILSVRC-format benchmark, train small-gap on it on the CPU, box the val images, evaluate.
#   bash scripts/demo.sh [WORK_DIR]       (default: runs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-runs/demo}"
cli="${CAM_CLI:-.venv/bin/cam-cli}"
start=$SECONDS

mkdir -p "$work"
echo "== 1/4 generate the synthetic benchmark (ILSVRC layout) in $work/data" >&2
"$cli" synth "$work/data" --seed 0 --overwrite

echo "== 2/4 train small-gap (image labels only) -> $work/run" >&2
rm -rf "$work/run"
"$cli" train --config configs/small-cpu.toml --data "$work/data" --out "$work/run"

echo "== 3/4 top-5 boxes for every val image -> $work/boxes.jsonl" >&2
"$cli" bbox --checkpoint "$work/run/best.pt" --images "$work/data/val" --topk 5 \
    --output "$work/boxes.jsonl" --draw "$work/draw"

echo "== 4/4 ILSVRC localization error (XML annotations)" >&2
"$cli" eval --predictions "$work/boxes.jsonl" --annotations "$work/data/annotations" \
    --classes "$work/data/LOC_synset_mapping.txt" --json "$work/eval.json"

# The benchmark is only worth its name if CAM boxes beat both trivial baselines by far.
.venv/bin/python - "$work/eval.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
cam = report["top1_loc_error"]
baselines = {k: v["top1_loc_error"] for k, v in report["baselines"].items()}
print(f"check: top-1 loc error {cam:.2f}% vs baselines {baselines}", file=sys.stderr)
if not cam < 0.5 * min(baselines.values()):
    sys.exit("check failed: CAM boxes are not far better than the trivial baselines")
PY
echo "== done in $((SECONDS - start)) s; overlays with boxes in $work/draw/" >&2
