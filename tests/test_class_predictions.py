"""Another classifier's classes (`evaluation.class_predictions`): read line by line, bounded, each
problem one line naming the file and line; a FIFO refused at once; at most the five classes any
figure reads kept per image, however many the file lists."""

from __future__ import annotations

import json
import logging
import time

import pytest
from conftest import fifo, invoke, model_args, one_line_error, takes_under

from cam_cli.errors import EvaluationError
from cam_cli.evaluation.class_predictions import (
    USED_CLASSES,
    file_digest,
    read_class_predictions,
)


def test_json_lines_and_csv_with_a_header(tmp_path):
    lines = tmp_path / "c.jsonl"
    lines.write_text(json.dumps({"image": "val/a.JPEG", "classes": ["n1", 7]}) + "\n\n"
                     + json.dumps({"path": "/x/b.JPEG", "predictions": [{"wnid": "n2"},
                                                                       {"class_index": 3}]})
                     + "\n")  # fmt: skip
    assert read_class_predictions(lines) == {"a": ["n1", "7"], "b": ["n2", "3"]}
    table = tmp_path / "c.csv"
    table.write_text('image,classes\r\na.JPEG,n1 n2\r\nb,"n3",n4\r\n')
    assert read_class_predictions(table) == {"a": ["n1", "n2"], "b": ["n3", "n4"]}


def test_a_thousand_classes_per_image_keep_five_with_a_note(tmp_path, caplog):
    path = tmp_path / "c.csv"
    path.write_text("".join(f"im{i}," + " ".join(f"n{c:08d}" for c in range(1000)) + "\n"
                            for i in range(3)))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="cam_cli"):
        found = read_class_predictions(path)
    assert found == {f"im{i}": [f"n{c:08d}" for c in range(USED_CLASSES)] for i in range(3)}
    assert "note: " in caplog.text
    assert "3 image(s) list more than 5 classes" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("im,caf\xe9\n".encode("latin-1"), ":1: not UTF-8 text (byte 0xe9 at column 7)"),
        (b"im," + b"n" * 200_000 + b"\n", ":1: not a readable CSV row (field larger than"),
        (
            b'{"image": "a", "classes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
            ":1: JSON nested deeper than 100 levels",
        ),
        (b'{"image": "a", "classes": [["n1"]]}\n', ':1: no "classes" list of class names'),
        (b"x" * 2_000_000 + b"\n", ":1: a line longer than 1048576 bytes"),
    ],
)
def test_each_bad_file_is_one_error_naming_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "c.csv"
    path.write_bytes(content)
    with pytest.raises(EvaluationError) as refused:
        read_class_predictions(path)
    assert str(refused.value).startswith(f"{path}{message}"), str(refused.value)
    assert len(str(refused.value)) < len(str(path)) + 200  # an excerpt at most


def test_a_fifo_is_refused_at_once_by_the_reader_and_the_digest(tmp_path):
    with fifo(tmp_path / "c.csv") as path:
        started = time.monotonic()
        for read in (read_class_predictions, file_digest):
            with pytest.raises(EvaluationError, match=r"c.csv: not a regular file \(a FIFO\)"):
                read(path)
        takes_under(5, started)


def test_the_cli_refuses_a_fifo_at_once(fake, tmp_path):
    with fifo(tmp_path / "c.csv") as path:
        started = time.monotonic()
        result = invoke("eval", *model_args(fake), "--images", fake / "imgs", "--annotations",
                        fake / "xml", "--class-predictions", path)  # fmt: skip
        takes_under(15, started)
    one_line_error(result, "c.csv: not a regular file (a FIFO)")
