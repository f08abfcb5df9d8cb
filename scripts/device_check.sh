#!/usr/bin/env bash
# The whole check on a GPU machine (tests, outputs against the CPU's, speed, memory), as ONE
# command that ends within 5 minutes on an H100/H200 (16 cores, no internet, nothing
# pip-installed: python3 with torch,
# torchvision, typer, scipy, scikit-image, tqdm, timm; no pytest). From the repository root,
# with device_data/ carried (scripts/device_checks/prepare_device_data.sh makes it; ../shared is
# used for the sample where there is one):
#
#   bash scripts/device_check.sh                        # on the GPU machine (--device cuda)
#   PYTHON=.venv/bin/python bash scripts/device_check.sh --device cpu --quick   # a dry run here
#   options: --box-step auto|scipy|torch|triton (default auto) for the evals, stages, bench
#            and memory steps; --budget S (default 285 on CUDA, 900 on the CPU)
#
# Steps, each with a time limit cut to what is left of --budget; steps 1-6 together leave at
# least 60% of it (171 s on CUDA) to steps 7-9, and step 7 leaves 40% (114 s) to 8 and 9:
#   1 env      nvidia-smi, torch/CUDA/cuDNN/triton versions, the device, TF32 settings (max 10 s)
#   2 tests    the GPU-marked tests, for real: pytest from device_data/wheels (pip --no-index
#              into a temp dir, or the wheels unpacked where there is no pip), -m gpu over the
#              test files that have such tests; PASS/FAIL. NOT RUN (a failure) without the
#              wheels, unless $PYTHON has pytest of its own; on CUDA, all skipped is a FAIL
#                                                                                    (max 50 s)
#   3 eval     cam-cli eval on the 434-image sample, fp32 (--no-fast), TF32 off
#              (NVIDIA_TF32_OVERRIDE=0: cuBLAS and cuDNN; cam-cli leaves torch's defaults,
#              where cuDNN convolutions may use TF32)                                (max 35 s)
#   4 eval     the same with --fast (bf16 on CUDA; TF32 as torch sets it)            (max 35 s)
#   5 eval     fp32, TF32 off, --maxboxacc --maxboxacc-protocol cam-cli               (max 35 s)
#   6 compare  3-5 against the CPU fp32 figures of the README: top-1/top-5/GT-known error
#              within 0.1 (fp32) and 0.5 (--fast) points; MaxBoxAccV2 (cam-cli) 63.44 within
#              0.1; PASS/FAIL                                                        (max 10 s)
#   7 stages   scripts/device_checks/device_stages.py: per-stage ms/batch and img/s (read, decode, forward,
#              CAMs, each box step, the MaxBoxAccV2 sweep per step, host output); host syncs
#              per batch of bbox and eval --maxboxacc cam-cli (targets <= 2 and <= 4) with
#              their call sites; a torch.profiler trace of 3 batches (trace-bbox-3-batches.json
#              [.gz], profile-top25.txt); --decode pil vs device image by image and the decode
#              rates on the 227x227 sample and on device_data/val500 (~500x375)       (max 60 s)
#   8 bench    scripts/benchmarks/bench_bbox.py: mobilenet_v2, googlenet, resnet50, vgg16-gap on the sample
#              replicated to 4,330 files; forward only, decode only, pipeline, then eval
#              --maxboxacc (mobilenet_v2, 434 files); ratios and the issue's targets. Its own
#              --time-limit is its step's limit less 15 s, so its report is always printed
#                                                      (what is left, less 45 s kept for step 9)
#   9 memory   bench_bbox.py --rss-only: host RSS and GPU memory peak, 500 vs 5,000 images
#                                                                                    (max 45 s)
#  10 train    scripts/device_checks/train_smoke.py: the first 20 steps (--quick: 2 steps of
#              4 at 64 px) of configs/tiny-imagenet-finetune.toml (every layer trained) on synthetic images,
#              from the ImageNet backbone: img/s and the loss after them (train.json); PASS
#              when every step ran with a finite loss                (max 40 s; 240 s on the CPU)
# Results go to $OUT when it is set (the device tool brings that folder back), else to
# runs/device_check/: one log per step, eval-*.json, stages.json, the trace, bench.json,
# memory.json, summary.txt (every step's exit code and time, every check and target line).
# Exit code 0 when every step ran and every check passed (N/A lines aside; on the CPU, NOT
# MEASURED lines too: they need CUDA), else 1; 2 on a usage error.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

DEVICE=cuda
QUICK=0
BUDGET=
BOX_STEP=auto
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) DEVICE=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --budget) BUDGET=$2; shift 2 ;;
        --box-step) BOX_STEP=$2; shift 2 ;;
        -h | --help) sed -n '2,51p' "$0"; exit 0 ;;
        *) echo "device_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $BOX_STEP in
    auto | scipy | torch | triton) ;;
    *) echo "device_check.sh: --box-step $BOX_STEP: use auto, scipy, torch or triton" >&2; exit 2 ;;
esac
if [[ -z $BUDGET ]]; then
    # 5 minutes on the GPU machine, with a margin; the 2-core CPU here is much slower.
    if [[ $DEVICE == cpu ]]; then BUDGET=900; else BUDGET=285; fi
fi

PYTHON=${PYTHON:-python3}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
if ! "$PYTHON" -c "import torch" 2> /dev/null; then
    echo "device_check.sh: $PYTHON has no torch; set PYTHON=/path/to/python" >&2
    exit 2
fi

if [[ -d device_data/val ]]; then
    SAMPLE=device_data
    WEIGHTS=device_data/weights/mobilenet_v2-imagenet.pth
elif [[ -d ../shared/data/ilsvrc2012-val-sample/val ]]; then
    SAMPLE=../shared/data/ilsvrc2012-val-sample
    WEIGHTS=../shared/weights/mobilenet_v2-imagenet.pth
else
    echo "device_check.sh: no sample data: run scripts/device_checks/prepare_device_data.sh and carry" \
        "device_data" >&2
    exit 2
fi
IMAGES=$SAMPLE/val
CLASSES=$SAMPLE/LOC_synset_mapping.txt
SOLUTION=$SAMPLE/LOC_val_solution.csv
VAL500=device_data/val500
WHEELS=device_data/wheels

RESULTS=${OUT:-$REPO/runs/device_check}
mkdir -p "$RESULTS"
# No result of an earlier run may be read as this run's (a step stopped early writes none).
rm -f -- "$RESULTS"/{eval-fp32,eval-fast,eval-maxboxacc,stages,bench,memory,train}.json \
    "$RESULTS"/[1-9]-*.log "$RESULTS"/10-*.log "$RESULTS"/trace-bbox-3-batches.json* "$RESULTS"/profile-top25.txt
SUMMARY=$RESULTS/summary.txt
: > "$SUMMARY"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")
trap 'rm -rf -- "$SCRATCH"' EXIT

if ((QUICK)); then  # tiny counts: tries every path of the script in a few minutes on 2 cores
    STAGES_SIZE=(--batch-size 8 --batches 2 --decode-images 32 --compare-images 16)
    BENCH_SIZE=(--replicate-to 24 --batch-size 8 --repeats 1 --warmup-batches 1
        --eval mobilenet_v2 --eval-images 16)
    MEMORY_SIZE=(--replicate-to 48 --batch-size 8 --rss-counts 16,48)
    TRAIN_SIZE=(--steps 2 --batch-size 4 --image-size 64 --workers 0)
else  # vgg16-gap and the networks without a rate target get one timed pass
    STAGES_SIZE=()
    BENCH_SIZE=(--replicate-to 4330 --repeats 2
        --repeats-per-arch googlenet=1,resnet50=1,vgg16-gap=1 --warmup-batches 1
        --eval mobilenet_v2)
    MEMORY_SIZE=(--replicate-to 4330)
    TRAIN_SIZE=(--steps 20)
fi

START=$SECONDS
FAILED=0
STEP_LIMIT=0
# run_step NAME MAX_S KEEP_S FUNCTION: runs FUNCTION with STEP_LIMIT set to MAX_S seconds, cut so
# that KEEP_S seconds of the budget are left for the steps after it (each command of FUNCTION
# runs under `limited`); its output goes to the terminal and to $RESULTS/NAME.log. Sets STEP_RC.
limited() { timeout -k 5 "$STEP_LIMIT" "$@"; }
run_step() {
    local name=$1 max=$2 keep=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START) - keep))
    STEP_LIMIT=$((max < left ? max : left))
    STEP_RC=0
    if ((STEP_LIMIT < 5)); then
        echo "== $name: SKIPPED (time budget)" | tee -a "$SUMMARY"
        STEP_RC=124
        FAILED=1
        return 0
    fi
    echo "== $name (limit ${STEP_LIMIT} s): $*"
    local t0=$SECONDS
    set +e
    "$@" 2>&1 | tee "$RESULTS/$name.log"
    STEP_RC=${PIPESTATUS[0]}
    set -e
    local note=""
    if ((STEP_RC == 124 || STEP_RC == 137)); then note=" (stopped at its time limit)"; fi
    echo "== $name: exit code $STEP_RC$note, $((SECONDS - t0)) s of ${STEP_LIMIT} s" \
        | tee -a "$SUMMARY"
    return 0
}

env_report() {
    echo "date: $(date -u +%FT%TZ); host: $(hostname); CPUs: $(nproc)"
    git -C "$REPO" log -1 --format='commit: %h %s' 2> /dev/null || echo "commit: (no git here)"
    if command -v nvidia-smi > /dev/null; then
        limited nvidia-smi
    else
        echo "nvidia-smi: not found"
    fi
    limited "$PYTHON" - "$DEVICE" "$BOX_STEP" << 'EOF'
import os
import sys

import torch
import torchvision

print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}")
try:
    import triton

    print(f"triton {triton.__version__}")
except ImportError as error:
    print(f"triton: not importable ({error})")
print(f"cuda available: {torch.cuda.is_available()}, devices: {torch.cuda.device_count()}")
print(f"TF32 as torch sets it (cam-cli leaves it): cudnn.allow_tf32 "
      f"{torch.backends.cudnn.allow_tf32}, cuda.matmul.allow_tf32 "
      f"{torch.backends.cuda.matmul.allow_tf32}, float32_matmul_precision "
      f"{torch.get_float32_matmul_precision()}; NVIDIA_TF32_OVERRIDE "
      f"{os.environ.get('NVIDIA_TF32_OVERRIDE', '(unset)')} here, 0 in the fp32 evals")
if sys.argv[1].startswith("cuda"):
    from cam_cli.boxes.backends import resolve_box_backend, triton_problem

    device = torch.device(sys.argv[1])
    props = torch.cuda.get_device_properties(device)
    print(f"{device}: {props.name}, {props.total_memory / 2**30:.1f} GiB, capability "
          f"{props.major}.{props.minor}, bf16 {torch.cuda.is_bf16_supported()}")
    print(f"box step {sys.argv[2]} -> {resolve_box_backend(sys.argv[2], device)} "
          f"(triton: {triton_problem(device) or 'runs here'})")
EOF
}

gpu_tests() {
    local what="check GPU-marked tests (pytest -m gpu)" site="" how
    if compgen -G "$WHEELS/pytest-*.whl" > /dev/null; then
        site=$SCRATCH/pytest-site
        how="pytest installed from $WHEELS (pip --no-index)"
        if ! "$PYTHON" -m pip --version > /dev/null 2>&1 \
            || ! limited "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index \
                --find-links "$WHEELS" --target "$site" pytest; then
            # no pip, or it failed: a pure-Python wheel is a zip of what pip would install
            how="pytest unpacked from $WHEELS (no pip here, or pip failed)"
            rm -rf -- "$site"
            "$PYTHON" - "$site" "$WHEELS"/*.whl << 'EOF'
import sys
import zipfile

for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(sys.argv[1])
EOF
        fi
    elif "$PYTHON" -c "import pytest" 2> /dev/null; then
        how="$PYTHON's own pytest (no $WHEELS)"
    else
        echo "$what: NOT RUN (no $WHEELS: run scripts/device_checks/prepare_device_data.sh and carry" \
            "device_data; $PYTHON has no pytest)"
        return 1
    fi
    # Only the files with GPU-marked tests are collected: faster, and a module that needs a
    # package the GPU machine lacks cannot stop the run.
    local files
    mapfile -t files < <(grep -l -E 'mark\.gpu|\bDEVICES\b' tests/test_*.py)
    if ((${#files[@]} == 0)); then files=(tests); fi
    echo "$how; ${#files[@]} test files: ${files[*]}"
    local rc=0 log=$SCRATCH/pytest.log
    PYTHONPATH="${site:+$site:}$PYTHONPATH" limited "$PYTHON" -m pytest -q -p no:cacheprovider \
        -m gpu -rs "${files[@]}" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
    local tally
    tally=$(grep -E '^=*.*(passed|skipped|failed|error|deselected).* in [0-9.]+s' "$log" | tail -1 \
        | sed -E 's/=//g; s/^ +| +$//g')
    local passed
    passed=$(grep -oE '[0-9]+ passed' <<< "$tally" | cut -d' ' -f1)
    case $rc in
        0)
            if [[ $DEVICE == cuda* && ${passed:-0} -eq 0 ]]; then
                echo "$what: FAIL (nothing passed on $DEVICE: $tally)"
                rc=1
            else
                echo "$what: PASS ($tally)"
            fi
            ;;
        5) echo "$what: FAIL (no test selected)" ;;
        124 | 137) echo "$what: FAIL (stopped at its time limit)" ;;
        *) echo "$what: FAIL (exit code $rc: $tally)" ;;
    esac
    return "$rc"
}

eval_run() {  # eval_run fp32|fast|maxboxacc
    local precision=(--no-fast) extra=() tf32=(env NVIDIA_TF32_OVERRIDE=0)
    case $1 in
        fast) precision=(--fast) tf32=() ;;
        maxboxacc) extra=(--maxboxacc --maxboxacc-protocol cam-cli) ;;
    esac
    limited "${tf32[@]}" "$PYTHON" -m cam_cli eval --arch mobilenet_v2 --weights "$WEIGHTS" \
        --classes "$CLASSES" --images "$IMAGES" --annotations "$SOLUTION" --device "$DEVICE" \
        --box-step "$BOX_STEP" "${precision[@]}" "${extra[@]}" --quiet \
        --json "$RESULTS/eval-$1.json"
}

compare_eval() {
    limited "$PYTHON" - "$RESULTS" "$DEVICE" << 'EOF'
import json
import sys
from pathlib import Path

results, device = Path(sys.argv[1]), sys.argv[2]
# README, "cam-cli eval" and "MaxBoxAccV2: wsolevaluation's figure": 434-image sample,
# MobileNetV2, CPU, fp32 (--no-fast); MaxBoxAccV2 with --maxboxacc-protocol cam-cli.
reference = {"top1_loc_error": 51.61, "top5_loc_error": 42.63, "gt_known_loc_error": 40.78,
             "maxboxacc_v2": 63.44}
names = {"top1_loc_error": "top-1 loc error", "top5_loc_error": "top-5 loc error",
         "gt_known_loc_error": "GT-known loc error", "maxboxacc_v2": "MaxBoxAccV2 (cam-cli)"}
runs = {  # run: (tolerance, what it is)
    "fp32": (0.1, "fp32, TF32 off"),
    "fast": (0.5, "--fast"),
    "maxboxacc": (0.1, "fp32, TF32 off, --maxboxacc cam-cli"),
}


def figures(report: dict) -> dict:
    out = {key: report.get(key) for key in names}
    box = report.get("maxboxacc_v2")
    out["maxboxacc_v2"] = None
    if isinstance(box, dict) and box.get("protocol") == "cam-cli":
        out["maxboxacc_v2"] = box.get("maxboxacc_v2")
    return out


found = {}
for run in runs:
    path = results / f"eval-{run}.json"
    found[run] = json.loads(path.read_text()) if path.is_file() else None
shown = {run: figures(r) if r else {} for run, r in found.items()}
print(f"{'figure':<24}{'CPU fp32 (README)':>19}" + "".join(f"{device + ' ' + r:>22}" for r in runs))
for key, name in names.items():
    cells = [f"{shown[r][key]:.2f}" if shown[r].get(key) is not None else "-" for r in runs]
    print(f"{name:<24}{reference[key]:>19.2f}" + "".join(f"{c:>22}" for c in cells))
for run, (tol, what) in runs.items():
    report = found[run]
    wanted = [k for k in reference if run == "maxboxacc" or k != "maxboxacc_v2"]
    label = f"check eval {what} on {device} within {tol} points of CPU fp32"
    if report is None:
        print(f"{label}: NOT MEASURED (no eval-{run}.json: see its step's log)")
        continue
    missing = [names[k] for k in wanted if shown[run].get(k) is None]
    if missing:
        print(f"{label}: FAIL (not in the report: {', '.join(missing)})")
        continue
    worst = max(abs(shown[run][k] - reference[k]) for k in wanted)
    word = "PASS" if worst <= tol + 1e-9 and report["images"] == 434 else "FAIL"
    print(f"{label}: largest difference {worst:.2f} over {report['images']} images, "
          f"{report['failed_images']} failed: {word}")
EOF
}

stages() {
    local val500=()
    if [[ -d $VAL500 ]]; then val500=(--val500 "$VAL500"); fi
    limited "$PYTHON" scripts/device_checks/device_stages.py --device "$DEVICE" --images "$IMAGES" \
        --classes "$CLASSES" --annotations "$SOLUTION" --weights "$WEIGHTS" "${val500[@]}" \
        --box-step "$BOX_STEP" "${STAGES_SIZE[@]}" --out "$RESULTS" \
        --time-limit "$((STEP_LIMIT > 15 ? STEP_LIMIT - 5 : 10))"
}

KEEP_LATE=$((BUDGET * 60 / 100))  # what steps 1-6 leave for steps 7-9
KEEP_BENCH=$((BUDGET * 40 / 100))  # what step 7 leaves for the benchmark and the memory check
run_step 1-env 10 "$KEEP_LATE" env_report
run_step 2-gpu-tests 50 "$KEEP_LATE" gpu_tests
((STEP_RC == 0)) || FAILED=1
run_step 3-eval-fp32 35 "$KEEP_LATE" eval_run fp32
((STEP_RC == 0)) || FAILED=1
run_step 4-eval-fast 35 "$KEEP_LATE" eval_run fast
((STEP_RC == 0)) || FAILED=1
run_step 5-eval-maxboxacc 35 "$KEEP_LATE" eval_run maxboxacc
((STEP_RC == 0)) || FAILED=1
run_step 6-eval-compare 10 "$((KEEP_LATE - 5))" compare_eval
((STEP_RC == 0)) || FAILED=1
run_step 7-stages 60 "$KEEP_BENCH" stages
((STEP_RC == 0)) || FAILED=1
# The benchmark stops its own variants 15 s before its step's limit, so its report is printed.
bench() {
    local limit=$((STEP_LIMIT - 15))
    limited "$PYTHON" scripts/benchmarks/bench_bbox.py --device "$DEVICE" \
        --archs mobilenet_v2,googlenet,resnet50,vgg16-gap --images "$IMAGES" \
        --classes "$CLASSES" --annotations "$SOLUTION" --box-step "$BOX_STEP" "${BENCH_SIZE[@]}" \
        --time-limit "$((limit > 10 ? limit : 10))" --save "$RESULTS/bench.json"
}
run_step 8-bench 600 85 bench
((STEP_RC == 0)) || FAILED=1
memory() {
    local limit=$((STEP_LIMIT - 10))
    limited "$PYTHON" scripts/benchmarks/bench_bbox.py --device "$DEVICE" --rss-only --archs mobilenet_v2 \
        --images "$IMAGES" --classes "$CLASSES" --box-step "$BOX_STEP" "${MEMORY_SIZE[@]}" \
        --time-limit "$((limit > 10 ? limit : 10))" --save "$RESULTS/memory.json"
}
run_step 9-memory 45 40 memory
((STEP_RC == 0)) || FAILED=1
train_smoke() {
    local rc=0
    limited "$PYTHON" scripts/device_checks/train_smoke.py \
        --config configs/tiny-imagenet-finetune.toml \
        --device "$DEVICE" --backbone-weights "$WEIGHTS" "${TRAIN_SIZE[@]}" \
        > "$RESULTS/train.json" || rc=$?
    cat "$RESULTS/train.json"
    if ((rc == 0)); then
        echo "check train-smoke: every step ran, loss finite: PASS"
    else
        echo "check train-smoke: every step ran, loss finite: FAIL (exit $rc)"
    fi
    return "$rc"
}
# 40 s on the GPU; the CPU dry run's two tiny steps take longer than that on 2 shared cores.
TRAIN_MAX=40
if [[ $DEVICE == cpu ]]; then TRAIN_MAX=240; fi
run_step 10-train "$TRAIN_MAX" 0 train_smoke
((STEP_RC == 0)) || FAILED=1

{
    echo "== checks and targets"
    grep -h -E '^(check|target) ' "$RESULTS"/2-gpu-tests.log "$RESULTS"/6-eval-compare.log \
        "$RESULTS"/7-stages.log "$RESULTS"/8-bench.log "$RESULTS"/9-memory.log \
        "$RESULTS"/10-train.log 2> /dev/null \
        || echo "(none printed)"
} | tee -a "$SUMMARY"
# NOT MEASURED fails the check on CUDA; on the CPU it is what a line that needs CUDA says.
verdicts='FAIL|NOT RUN|NOT MEASURED'
if [[ $DEVICE == cpu ]]; then verdicts='FAIL|NOT RUN'; fi
if grep -q -E "^(check|target) .*(: |  )($verdicts)" "$SUMMARY"; then
    FAILED=1
fi
mode=$DEVICE
if ((QUICK)); then mode="$DEVICE, --quick"; fi
echo "== total $((SECONDS - START)) s of a ${BUDGET} s budget ($mode, box step $BOX_STEP);" \
    "results in $RESULTS" | tee -a "$SUMMARY"
if ((FAILED)); then
    echo "== device_check: SOME STEPS OR CHECKS FAILED (see above)" | tee -a "$SUMMARY"
    exit 1
fi
echo "== device_check: all steps ran and every check passed" | tee -a "$SUMMARY"
