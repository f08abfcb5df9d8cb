"""docs/own-data.md's example: three Tiny ImageNet classes as a user's own folders.

    python scripts/docs/own_data_example.py ../shared/data/tiny-imagenet-dev my_data

writes, with human names as the class folders (jellyfish, king_penguin, golden_retriever):

  my_data/train/<name>/<name>_NNN.jpg   the first --train images (by number) of each class
  my_data/val/<name>/<name>_val_NNN.jpg the first --val val images of each class
  my_data/boxes/<name>_NNN.jpg          the next --boxed training images of each class, with
  my_data/boxes/boxes.csv               their own boxes (path,class,xmin,ymin,xmax,ymax)
  my_data/val_boxes.csv                 the val images' own boxes, the same way

Boxes are Tiny ImageNet's, inclusive 0-based pixels, as cam-cli's CSV ground truth reads them.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

CLASSES = {"n01910747": "jellyfish", "n02056570": "king_penguin", "n02099601": "golden_retriever"}
HEADER = "path,class,xmin,ymin,xmax,ymax\n"


def number(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tiny", type=Path, help="a Tiny ImageNet root (train/, val/)")
    parser.add_argument("out", type=Path, help="the folder to write (must not exist)")
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--val", type=int, default=20)
    parser.add_argument("--boxed", type=int, default=5)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out}: exists already")
    table = (args.tiny / "val" / "val_annotations.txt").read_text().splitlines()
    val_rows = [line.split("\t") for line in table]
    boxes, val_boxes = [HEADER], [HEADER]
    (args.out / "boxes").mkdir(parents=True)
    for wnid, name in CLASSES.items():
        files = sorted((args.tiny / "train" / wnid / "images").iterdir(), key=number)
        lines = (args.tiny / "train" / wnid / f"{wnid}_boxes.txt").read_text().splitlines()
        train_boxes = dict(line.split("\t", 1) for line in lines)
        for folder in ("train", "val"):
            (args.out / folder / name).mkdir(parents=True)
        for i, path in enumerate(files[: args.train]):
            shutil.copy(path, args.out / "train" / name / f"{name}_{i:03d}.jpg")
        for i, path in enumerate(files[args.train : args.train + args.boxed]):
            shutil.copy(path, args.out / "boxes" / f"{name}_{i:03d}.jpg")
            box = train_boxes[path.name].split()
            boxes.append(",".join([f"{name}_{i:03d}.jpg", name, *box]) + "\n")
        for i, row in enumerate([r for r in val_rows if r[1] == wnid][: args.val]):
            target = args.out / "val" / name / f"{name}_val_{i:03d}.jpg"
            shutil.copy(args.tiny / "val" / "images" / row[0], target)
            val_boxes.append(",".join([f"{name}/{target.name}", name, *row[2:6]]) + "\n")
    (args.out / "boxes" / "boxes.csv").write_text("".join(boxes))
    (args.out / "val_boxes.csv").write_text("".join(val_boxes))


if __name__ == "__main__":
    main()
