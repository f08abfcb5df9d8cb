"""Options checked up front (`cli.options`): sizes out of range are one line and exit 2."""

from __future__ import annotations

import pytest
from conftest import invoke, model_args, one_line_error


@pytest.mark.parametrize("size", ["0", "5", "100000"])
def test_input_size_out_of_range(fake, size, tmp_path):
    for command in (["bbox"], ["cam", "--out", tmp_path / "c"]):
        result = invoke(*command, *model_args(fake), "--images", fake / "imgs",
                        "--input-size", size)  # fmt: skip
        one_line_error(result, f"--input-size {size}")
    result = invoke("eval", *model_args(fake), "--images", fake / "imgs", "--annotations",
                    fake / "xml", "--input-size", size)  # fmt: skip
    one_line_error(result, "--input-size")
    result = invoke("train", "--data", tmp_path, "--out", tmp_path / "r", "--image-size", size)
    one_line_error(result, f"--image-size {size}")
    assert not (tmp_path / "c").exists()
    assert not (tmp_path / "r").exists()


def test_library_arguments_in_backticks_become_flags():
    """Library messages name arguments in backticks; the CLI names the flags (one table)."""
    from cam_cli.cli.options import as_flags, message
    from cam_cli.errors import ArgumentError, EvaluationError

    assert (
        as_flags("`per_image` x.jsonl: not a regular file")
        == "--per-image x.jsonl: not a regular file"
    )
    assert as_flags("`compile_model` failed; `classes_file` and `box_rule`") == (
        "--compile failed; --classes and --box-rule"
    )
    # not an argument name: left as it is
    assert as_flags("the predictions of `cam-cli bbox`") == "the predictions of `cam-cli bbox`"
    assert message(EvaluationError("`boxes` 2 needs `box_rule` zhou2016")) == (
        "--boxes 2 needs --box-rule zhou2016"
    )
    assert message(ArgumentError("threshold", "must be below `topk`")) == (
        "--threshold must be below --topk"
    )
