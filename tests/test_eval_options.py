"""`EvalOptions.validate`: every rule on which `eval`'s options go together, in one place, each
message naming the library's arguments (the command line names its flags from them: `as_flags`
gives the very lines `cam-cli eval` has always printed)."""

from __future__ import annotations

import pytest

from cam_cli.cli.options import as_flags
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import (
    EvalOptions,
    MetricOptions,
    OutputOptions,
    SourceOptions,
    TruthOptions,
)
from cam_cli.settings import CamOptions, ModelOptions, RunOptions

XML = TruthOptions(annotations="xml", images="val")
RECORDS = SourceOptions(predictions="records.jsonl")
MAPS = SourceOptions(scoremaps="maps")


@pytest.mark.parametrize(
    ("options", "library", "cli"),
    [
        (EvalOptions(TruthOptions(images="x")),
         "give the ground truth: `annotations` PATH or `cub` ROOT or `wsol_metadata` DIR",
         "give the ground truth: --annotations PATH or --cub ROOT or --wsol-metadata DIR"),
        (EvalOptions(TruthOptions(cub="c", meta="m")),
         "`meta` goes with `annotations`", "--meta goes with --annotations"),
        (EvalOptions(TruthOptions(annotations="a", split="train")),
         "`split` goes with `cub`", "--split goes with --cub"),
        (EvalOptions(TruthOptions(cub="c"), SourceOptions(model=ModelOptions(classes_file="k"))),
         "leave out `classes_file`", "leave out --classes"),
        (EvalOptions(TruthOptions(annotations="a")), "give the images: `images` DIR",
         "give the images: --images DIR (or --predictions FILE|- from `cam-cli bbox`)"),
        (EvalOptions(TruthOptions(wsol_metadata="m")), "give the images: `images` ROOT",
         "give the images: --images ROOT, the folder the ids of image_ids.txt are in"),
        (EvalOptions(TruthOptions(cub="c", images="i")), "leave out `images`",
         "with --cub the images come from ROOT/images; leave out --images"),
        (EvalOptions(TruthOptions(annotations="a"),
                     SourceOptions(model=ModelOptions(arch="x"), cam=CamOptions(threshold=0.3),
                                   run=RunOptions(compile_model=True), predictions="-")),
         "`predictions` scores records without a model; leave out `arch`, `threshold`, "
         "`compile_model`",
         "--predictions scores records without a model; leave out --arch, --threshold, "
         "--compile (GT-known error and --maxboxacc need a model run)"),
        (EvalOptions(XML, SourceOptions(scoremaps="m", cam=CamOptions(box_rule="zhou2016")),
                     MetricOptions(boxes=2), OutputOptions(per_image="p")),
         "`scoremaps` scores saved maps without a model; leave out `box_rule`, `boxes`, "
         "`per_image`",
         "--scoremaps scores saved maps without a model; leave out --box-rule, --boxes, "
         "--per-image"),
        (EvalOptions(TruthOptions(annotations="a"), RECORDS,
                     outputs=OutputOptions(save_scoremaps="m")),
         "`save_scoremaps` needs a model run; leave out `predictions`",
         "--save-scoremaps needs a model run; leave out --predictions"),
        (EvalOptions(XML, metrics=MetricOptions(cam_threshold_from="r")),
         "carries MaxBoxAccV2's thresholds: add `maxboxacc`",
         "--cam-threshold-from carries MaxBoxAccV2's thresholds: add --maxboxacc"),
        (EvalOptions(TruthOptions(annotations="a"), RECORDS,
                     MetricOptions(cam_threshold_from="r")),
         "`cam_threshold_from` needs MaxBoxAccV2", "--cam-threshold-from needs MaxBoxAccV2"),
        (EvalOptions(TruthOptions(annotations="a"), RECORDS,
                     MetricOptions(class_predictions="c")),
         "`class_predictions` goes with a model run", "--class-predictions goes with a model"),
        (EvalOptions(TruthOptions(annotations="a", images="i", mask_root="m")),
         "`mask_root` goes with `wsol_metadata`", "--mask-root goes with --wsol-metadata"),
        (EvalOptions(XML, metrics=MetricOptions(boxes=3)), "`boxes` must be 1 or 2",
         "--boxes must be 1 or 2 (as the released evaluation), not 3"),
        (EvalOptions(XML, metrics=MetricOptions(boxes=2)), "`boxes` 2 needs a rule",
         "--boxes 2 needs a rule that ranks boxes: --box-rule zhou2016"),
        (EvalOptions(XML, SourceOptions(cam=CamOptions(box_rule="zhou2016")),
                     MetricOptions(boxes=2), OutputOptions(per_image="p")),
         "`boxes` 2 cannot resume from `per_image`",
         "--boxes 2 cannot resume from --per-image yet; leave one out"),
        (EvalOptions(XML, metrics=MetricOptions(maxboxacc_protocol="cam-cli"),
                     outputs=OutputOptions(save_scoremaps="m")),
         "use it with `maxboxacc_protocol` wsol", "use it with --maxboxacc-protocol wsol"),
        (EvalOptions(XML, metrics=MetricOptions(maxboxacc_protocol="other")),
         "unknown MaxBoxAccV2 protocol 'other'", "unknown MaxBoxAccV2 protocol 'other'"),
        (EvalOptions(XML, outputs=OutputOptions(per_image="-")), "`per_image` needs a FILE",
         "--per-image needs a FILE (stdout carries the table or the JSON)"),
        (EvalOptions(XML, outputs=OutputOptions(per_image="same.json", json_report="same.json")),
         "`json_report` and `per_image` must be different files",
         "--json and --per-image must be different files"),
    ],
)  # fmt: skip
def test_each_rule_names_the_arguments_and_the_cli_its_flags(options, library, cli):
    with pytest.raises(EvaluationError) as raised:
        options.validate()
    assert library in str(raised.value)
    assert cli in as_flags(str(raised.value))


def test_options_that_go_together_pass():
    """The defaults of a model run, records with their class list, maps carried a threshold."""
    EvalOptions(XML).validate()
    model = ModelOptions(classes_file="LOC_synset_mapping.txt")
    EvalOptions(
        TruthOptions(annotations="a"),
        SourceOptions(model=model, predictions="-"),
        outputs=OutputOptions(per_image="p.jsonl"),
    ).validate()
    EvalOptions(
        TruthOptions(wsol_metadata="m"), MAPS, MetricOptions(cam_threshold_from="r.json")
    ).validate()
    EvalOptions(
        TruthOptions(cub="c", split="all"),
        metrics=MetricOptions(maxboxacc=True),
        outputs=OutputOptions(save_scoremaps="maps", json_report="-"),
    ).validate()


def test_the_mode_is_where_the_figures_come_from():
    assert EvalOptions(XML).mode == "model"
    assert EvalOptions(XML, RECORDS).mode == "predictions"
    assert EvalOptions(XML, SourceOptions(predictions="-", scoremaps="m")).mode == "scoremaps"


def test_a_file_named_for_the_score_map_folder_is_refused(tmp_path):
    (tmp_path / "maps").write_text("a file")
    options = EvalOptions(XML, outputs=OutputOptions(save_scoremaps=tmp_path / "maps"))
    with pytest.raises(EvaluationError, match="`save_scoremaps` needs a folder; this is a file"):
        options.validate()
