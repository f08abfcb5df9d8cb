#!/usr/bin/env bash
# Copy what the GPU check (scripts/device_check.sh) needs from ../shared into device_data/ at
# the repository root, so that the device machine, which has no ../shared, gets it as a carried
# path:
#   device_data/val/*.JPEG               the 434 real ILSVRC2012 val sample images
#   device_data/annotations/*.xml        their boxes, one XML per image
#   device_data/LOC_val_solution.csv     the same boxes, Kaggle format
#   device_data/LOC_synset_mapping.txt   the 1000 classes
#   device_data/weights/*.pth            mobilenet_v2-imagenet.pth, squeezenet1_1-imagenet-caffe.pth
#   device_data/val500/*.JPEG            the same 434 images re-encoded at ILSVRC's usual size
#                                        (500x375, every 4th 375x500; quality 90, baseline,
#                                        YCbCr 4:2:0, by PIL): decode rates at a real size
#   device_data/wheels/*.whl             pytest and its pure-Python dependencies (pip
#                                        download), so device_check.sh runs the GPU tests
# device_data/ must be ignored by git (the device tool carries ignored paths only when named in
# its carry list): the script adds it to the exclude file git reads for this checkout when it is
# not ignored yet. The device tool carries at most 64 MiB in all: the size is checked and printed.
# Replication of the images to 4,330 files happens on the device machine (bench_bbox.py
# --replicate-to makes links in a temp dir), never here.
#
# Usage: bash scripts/device_checks/prepare_device_data.sh [--shared DIR] [--wheels DIR]
#   --shared DIR   default ../shared
#   --wheels DIR   copy the wheels from DIR instead of downloading them (pip download needs
#                  the package index)
# PYTHON (default python3) runs PIL and pip.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=$REPO/../shared
LIMIT_MIB=64
WHEELS_FROM=
PYTHON=${PYTHON:-python3}

while [[ $# -gt 0 ]]; do
    case $1 in
        --shared) SHARED=$2; shift 2 ;;
        --wheels) WHEELS_FROM=$2; shift 2 ;;
        -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "prepare_device_data.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

SAMPLE=$SHARED/data/ilsvrc2012-val-sample
WEIGHTS=$SHARED/weights
for needed in "$SAMPLE/val" "$SAMPLE/annotations" "$SAMPLE/LOC_val_solution.csv" \
    "$SAMPLE/LOC_synset_mapping.txt" "$WEIGHTS/mobilenet_v2-imagenet.pth" \
    "$WEIGHTS/squeezenet1_1-imagenet-caffe.pth"; do
    if [[ ! -e $needed ]]; then
        echo "prepare_device_data.sh: $needed is missing (give --shared DIR)" >&2
        exit 2
    fi
done

# Built beside the target, then swapped in: a run that stops half-way leaves the old copy.
TARGET=$REPO/device_data
BUILD=$(mktemp -d "$REPO/.device_data.XXXXXX")
trap 'rm -rf -- "$BUILD"' EXIT
mkdir -p "$BUILD/val" "$BUILD/annotations" "$BUILD/weights"
cp -- "$SAMPLE"/val/*.JPEG "$BUILD/val/"
cp -- "$SAMPLE"/annotations/*.xml "$BUILD/annotations/"
cp -- "$SAMPLE/LOC_val_solution.csv" "$SAMPLE/LOC_synset_mapping.txt" "$BUILD/"
cp -- "$WEIGHTS/mobilenet_v2-imagenet.pth" "$WEIGHTS/squeezenet1_1-imagenet-caffe.pth" \
    "$BUILD/weights/"
chmod -R u+w,go+r "$BUILD"  # the sources are read-only; the copy must be replaceable
chmod 755 "$BUILD"
images=$(find "$BUILD/val" -name '*.JPEG' | wc -l)
xmls=$(find "$BUILD/annotations" -name '*.xml' | wc -l)
if [[ $images -ne 434 || $xmls -ne 434 ]]; then
    echo "prepare_device_data.sh: expected 434 images and 434 annotations, got $images and $xmls" >&2
    exit 1
fi

# The sample at ILSVRC's usual size: its photos are 227x227, most of ILSVRC's are 500x375 or
# 375x500. Upscaled (bicubic), so the content is the sample's; what changes is what the
# decoders see: 3.6x the pixels, two sizes in a batch, the same JPEG kind as ILSVRC's files.
mkdir -p "$BUILD/val500"
"$PYTHON" - "$BUILD/val" "$BUILD/val500" << 'EOF'
import sys
from pathlib import Path

from PIL import Image

source, target = Path(sys.argv[1]), Path(sys.argv[2])
for i, path in enumerate(sorted(source.glob("*.JPEG"))):
    size = (375, 500) if i % 4 == 3 else (500, 375)
    with Image.open(path) as image:
        image = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    # subsampling=2: 4:2:0; baseline (not progressive), as ILSVRC's files are
    image.save(target / path.name, "JPEG", quality=90, subsampling=2, progressive=False)
EOF
val500=$(find "$BUILD/val500" -name '*.JPEG' | wc -l)
if [[ $val500 -ne 434 ]]; then
    echo "prepare_device_data.sh: expected 434 images in val500/, got $val500" >&2
    exit 1
fi

# pytest for the GPU machine (it has none, and no package index): pure-Python wheels that
# device_check.sh installs there with pip --no-index (or unpacks, where there is no pip).
# tomli and exceptiongroup (with typing_extensions) are pytest's dependencies on a Python < 3.11.
mkdir -p "$BUILD/wheels"
if [[ -n $WHEELS_FROM ]]; then
    cp -- "$WHEELS_FROM"/*.whl "$BUILD/wheels/"
elif ! {
    "$PYTHON" -m pip download --quiet --only-binary=:all: --dest "$BUILD/wheels" pytest &&
        "$PYTHON" -m pip download --quiet --only-binary=:all: --dest "$BUILD/wheels" \
            --no-deps --platform any --implementation py --abi none --python-version 3.10 \
            tomli exceptiongroup typing_extensions  # pure Python, for any interpreter
} 2> "$BUILD/pip.log"; then
    cat "$BUILD/pip.log" >&2
    echo "prepare_device_data.sh: pip download pytest failed (give --wheels DIR)" >&2
    exit 1
fi
rm -f -- "$BUILD/pip.log"
for needed in pytest iniconfig pluggy packaging; do
    if ! compgen -G "$BUILD/wheels/$needed-*.whl" > /dev/null; then
        echo "prepare_device_data.sh: no $needed wheel in device_data/wheels" >&2
        exit 1
    fi
done
wheels=$(find "$BUILD/wheels" -name '*.whl' | wc -l)
rm -rf -- "$TARGET"
mv -- "$BUILD" "$TARGET"
trap - EXIT

# Ignored by git, through the exclude file git reads for this checkout. (In a linked worktree
# that file is the main repository's .git/info/exclude, shared by all its worktrees.)
if git -C "$REPO" rev-parse --git-dir > /dev/null 2>&1; then
    if git -C "$REPO" check-ignore -q device_data/; then
        echo "device_data/ is already ignored by git"
    else
        exclude=$(git -C "$REPO" rev-parse --path-format=absolute --git-path info/exclude)
        mkdir -p "$(dirname "$exclude")"
        echo "/device_data/" >> "$exclude"
        echo "added /device_data/ to $exclude"
        git -C "$REPO" check-ignore -q device_data/ || {
            echo "prepare_device_data.sh: device_data/ is still not ignored" >&2
            exit 1
        }
    fi
else
    echo "warning: $REPO is not a git checkout; device_data/ was not added to an exclude file" >&2
fi

bytes=$(du -sb "$TARGET" | cut -f1)
files=$(find "$TARGET" -type f | wc -l)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
val500_mib=$(du -sb "$TARGET/val500" | awk '{ printf "%.1f", $1 / 1048576 }')
echo "device_data/: $files files, $mib MiB ($images images, $xmls annotations, 2 weights files;" \
    "val500/: $val500 images, $val500_mib MiB; wheels/: $wheels wheels)"
if ((bytes > LIMIT_MIB * 1048576)); then
    echo "prepare_device_data.sh: $mib MiB is over the device tool's $LIMIT_MIB MiB carry limit" >&2
    exit 1
fi
echo "carry it to the device machine with: carry [\"device_data\"]"
