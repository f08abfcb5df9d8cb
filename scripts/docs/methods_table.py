"""The table of docs/methods-table.md from `cam-cli eval --json` reports, one per map method:
localization figures (top-1 loc, GT-known, MaxBoxAccV2) and images per second from the runs on
the whole sample, faithfulness from the runs with `--faithfulness` (given separately, as they
may cover fewer images). Prints Markdown rows; figures are read, never typed in.

    python scripts/docs/methods_table.py --loc DIR --faith DIR --seconds LOG [--faith-seconds LOG]

DIR holds METHOD.json (loc) or METHOD_faith64.json (faith); LOG lines are
``== METHOD end HH:MM:SS rc=0 seconds=S load: a b c``, as the runner wrote them.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam",
           "scorecam")  # fmt: skip
LINE = re.compile(r"== (\S+) end \S+ rc=(\d+) seconds=([\d.]+) load: ([\d.]+)")


def _seconds(log: Path) -> dict[str, tuple[float, str]]:
    found = {}
    for line in log.read_text().splitlines():
        match = LINE.match(line)
        if match and match.group(2) == "0":
            found[match.group(1)] = (float(match.group(3)), match.group(4))
    return found


def _cell(value: float | None, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loc", type=Path, required=True)
    parser.add_argument("--faith", type=Path, required=True)
    parser.add_argument("--seconds", type=Path, required=True)
    args = parser.parse_args()
    seconds = _seconds(args.seconds)
    for method in METHODS:
        loc_file = args.loc / f"{method}.json"
        faith_file = args.faith / f"{method}_faith64.json"
        loc = json.loads(loc_file.read_text()) if loc_file.exists() else None
        faith = json.loads(faith_file.read_text()) if faith_file.exists() else None
        cells = [f"`{method}`"]
        if loc is not None:
            box = loc.get("maxboxacc_v2") or {}
            cells += [
                _cell(100 - loc["top1_loc_error"]),
                _cell(100 - loc["gt_known_loc_error"]),
                _cell(box.get("maxboxacc_v2")),
            ]
        else:
            cells += ["not finished"] * 3
        figures = (faith or {}).get("faithfulness")
        if figures:
            cells += [
                _cell(figures["average_drop"], 100),
                _cell(figures["increase_in_confidence"], 100),
                _cell(figures["deletion_auc"], 100),
                _cell(figures["insertion_auc"], 100),
            ]
        else:
            cells += ["not finished"] * 4
        if loc is not None and method in seconds:
            spent, load = seconds[method]
            cells.append(f"{loc['images'] / spent:.2f} (load {load})")
        else:
            cells.append("not measured" if loc is not None else "not finished")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
