"""Resumed `--per-image` lines (`evaluation.resume`) are read bounded and checked as strictly as
new input: an edited line is one error naming the file and line, never scored."""

from __future__ import annotations

import json

import pytest
from conftest import invoke, model_args, one_line_error

from cam_cli.errors import EvaluationError
from cam_cli.evaluation.resume import per_image_lines

RUN = "0123456789abcdef"


def line(**changes) -> dict:
    good = {
        "path": "/data/val/a.JPEG", "image_id": "a", "labels": ["n01440764"],
        "gt_boxes": [{"label": "n01440764", "box": [1, 2, 30, 20]}], "error": None,
        "predictions": [{"rank": 1, "class_index": 0, "wnid": "n01440764", "name": "tench",
                         "score": 0.9, "box": [0, 1, 29, 21], "iou": 0.8,
                         "class_correct": True, "loc_correct": True}],
        "gt_known_box": [0, 1, 29, 21], "width": 48, "height": 40,
        "maxboxacc_ious": [0.8] * 100, "run": RUN,
    }  # fmt: skip
    return {**good, **changes}


def write(path, *lines) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in lines))


def test_good_lines_are_read_and_a_torn_tail_is_left_out(tmp_path):
    path = tmp_path / "p.jsonl"
    write(path, line(), line(path="/data/val/b.JPEG", image_id="b", error="not an image",
                             predictions=[], width=None, height=None))  # fmt: skip
    with path.open("a") as handle:
        handle.write('{"path": "/data/val/c.JP')
    lines, end = per_image_lines(path, RUN)
    assert [parsed["image_id"] for _, parsed in lines] == ["a", "b"]
    assert end == len(path.read_bytes()) - len('{"path": "/data/val/c.JP')


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"predictions": "x"}, "'predictions' that are not a list"),
        (
            {"predictions": [{"rank": 1, "class_index": "0", "box": [0, 0, 1, 1]}]},
            "its 'predictions' are not those of a scored record",
        ),
        (
            {"predictions": [{"rank": "1", "class_index": 0, "box": [0, 0, 1, 1]}]},
            "a prediction without an integer 'rank'",
        ),
        ({"maxboxacc_ious": ["0.8"] * 100}, "'maxboxacc_ious' that are not IoUs"),
        ({"maxboxacc_ious": [1e9] * 100}, "'maxboxacc_ious' that are not IoUs"),
        ({"width": "48"}, "a 'width' that is not a positive integer"),
        ({"height": 0}, "a 'height' that is not a positive integer"),
        ({"gt_known_box": [0, 1, 29]}, "a 'gt_known_box' that is not 4 integers"),
        ({"error": 5}, "an 'error' that is not a string"),
        ({"image_id": None}, "no 'path' and 'image_id' strings"),
    ],
)
def test_an_edited_line_is_refused_naming_the_file_and_line(tmp_path, changes, problem):
    path = tmp_path / "p.jsonl"
    write(path, line(), line(**changes), line(image_id="c"))
    with pytest.raises(EvaluationError) as refused:
        per_image_lines(path, RUN)
    assert str(refused.value).startswith(f"{path}:2: a per-image line with {problem}")


def test_a_deep_or_overlong_middle_line_is_refused_not_a_recursion_error(tmp_path):
    from cam_cli.errors import InputFileError

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(line()) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n"
                    + json.dumps(line()) + "\n")  # fmt: skip
    with pytest.raises(EvaluationError, match=r"p.jsonl:2: not a per-image line"):
        per_image_lines(path, RUN)
    path.write_text(json.dumps(line()) + "\n" + "x" * 2_000_000 + "\n")
    with pytest.raises(InputFileError, match=r"p.jsonl:2: a line longer than 1048576 bytes"):
        per_image_lines(path, RUN)


def test_a_resume_with_inflated_ious_stops_with_one_line(fake, tmp_path):
    """Issue 25 (7): IoUs of 1e9 were trusted (MaxBoxAccV2 33.33 -> 66.67, exit 0)."""
    per_image = tmp_path / "p.jsonl"
    args = [*model_args(fake), "--images", fake / "imgs", "--annotations", fake / "xml",
            "--maxboxacc", "--per-image", per_image]  # fmt: skip
    assert invoke("eval", *args).exit_code == 0
    rows = [json.loads(text) for text in per_image.read_text().splitlines()]
    rows[1]["maxboxacc_ious"] = [1e9] * len(rows[1]["maxboxacc_ious"])
    per_image.write_text("".join(json.dumps(row) + "\n" for row in rows))
    one_line_error(invoke("eval", *args), f"{per_image}:2: a per-image line with")


def test_a_fully_resumed_run_asked_for_score_maps_says_it_writes_none(fake, tmp_path):
    """Issue 25 (16): it wrote none, without a word."""
    per_image, maps = tmp_path / "p.jsonl", tmp_path / "maps"
    args = [*model_args(fake), "--images", fake / "imgs", "--annotations", fake / "xml",
            "--maxboxacc", "--per-image", per_image, "--save-scoremaps", maps]  # fmt: skip
    assert invoke("eval", *args).exit_code == 0
    again = invoke("eval", *args)
    assert again.exit_code == 0, again.output
    assert (f"cam-cli: note: 3 of 3 images resumed from {per_image}: their score maps are not "
            "written again") in again.stderr  # fmt: skip
