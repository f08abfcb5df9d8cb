"""How long `read_wsol_metadata` takes for N image ids (ILSVRC train has 1.28 million).

Writes a box split of N ids (four files, one box per image) into a temporary folder and times
one read; the cam-cli imported is the one on PYTHONPATH, so the same script times two trees:

    PYTHONPATH=. python scripts/benchmarks/bench_wsol_metadata.py 100000 1000000
    PYTHONPATH=/path/to/old/tree timeout 600 python scripts/benchmarks/bench_wsol_metadata.py 100000

Prints one line per N: ids, seconds, the peak resident memory so far (Linux).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from cam_cli.data.wsol_metadata import read_wsol_metadata


def write_split(folder: Path, count: int) -> None:
    ids = [f"train/n{i % 1000:08d}/n{i % 1000:08d}_{i}.JPEG" for i in range(count)]
    folder.mkdir(parents=True)
    (folder / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (folder / "class_labels.txt").write_text(
        "".join(f"{i},{n % 1000}\n" for n, i in enumerate(ids))
    )
    (folder / "image_sizes.txt").write_text("".join(f"{i},500,375\n" for i in ids))
    (folder / "localization.txt").write_text("".join(f"{i},10,20,300,200\n" for i in ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", type=int, nargs="+", help="numbers of image ids")
    args = parser.parse_args()
    for count in args.counts:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "split"
            write_split(folder, count)
            started = time.perf_counter()
            metadata = read_wsol_metadata(folder)
            seconds = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            assert len(metadata.image_ids) == count
            print(f"{count} ids: {seconds:.2f} s (peak RSS {peak:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
