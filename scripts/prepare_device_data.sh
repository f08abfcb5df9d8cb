#!/usr/bin/env bash
# Copy what the GPU check (scripts/device_check.sh) needs from ../shared into device_data/ at
# the repository root, so that the device machine, which has no ../shared, gets it as a carried
# path:
#   device_data/val/*.JPEG               the 434 real ILSVRC2012 val sample images
#   device_data/annotations/*.xml        their boxes, one XML per image
#   device_data/LOC_val_solution.csv     the same boxes, Kaggle format
#   device_data/LOC_synset_mapping.txt   the 1000 classes
#   device_data/weights/*.pth            mobilenet_v2-imagenet.pth, squeezenet1_1-imagenet-caffe.pth
# device_data/ must be ignored by git (the device tool carries ignored paths only when named in
# its carry list): the script adds it to the exclude file git reads for this checkout when it is
# not ignored yet. The device tool carries at most 64 MiB in all: the size is checked and printed.
# Replication of the images to 4,330 files happens on the device machine (bench_bbox.py
# --replicate-to makes links in a temp dir), never here.
#
# Usage: bash scripts/prepare_device_data.sh [--shared DIR]     (default: ../shared)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$REPO/../shared
LIMIT_MIB=64

while [[ $# -gt 0 ]]; do
    case $1 in
        --shared) SHARED=$2; shift 2 ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
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
echo "device_data/: $files files, $mib MiB ($images images, $xmls annotations, 2 weights files)"
if ((bytes > LIMIT_MIB * 1048576)); then
    echo "prepare_device_data.sh: $mib MiB is over the device tool's $LIMIT_MIB MiB carry limit" >&2
    exit 1
fi
echo "carry it to the device machine with: carry [\"device_data\"]"
