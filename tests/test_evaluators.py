"""The evaluators' seam (`evaluators.base.Evaluator`): a figure is one class with `accumulate`
and `compute`, registered by one line in `evaluators.registry.EVALUATORS`; it sees every image
in order, after the figures before it in the list, and puts its figure into the report."""

from __future__ import annotations

from dataclasses import replace

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.data.ground_truth import GroundTruth
from cam_cli.eval_options import EvalOptions, SourceOptions
from cam_cli.evaluation.evaluate import evaluate
from cam_cli.evaluation.evaluators import registry
from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage, Setup
from cam_cli.evaluation.report import Report

WNID = "n01440764"


class Counting(Evaluator):
    """A new figure: how many images had their top-1 class right, as the line says."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, bool]] = []

    @classmethod
    def setup(cls, setup: Setup) -> Counting | None:
        return cls() if setup.mode == "predictions" else None

    def accumulate(self, image: ScoredImage) -> None:
        self.seen.append((image.path, image.line["top1_cls_correct"]))

    def compute(self, report: Report) -> Report:
        right = sum(correct for _, correct in self.seen)
        return replace(report, settings={**report.settings, "counted": right})


def record(stem: str, wnid: str) -> dict:
    prediction = {"rank": 1, "class_index": 0, "wnid": wnid, "box": [0, 0, 9, 9]}
    return {"path": f"{stem}.jpg", "width": 10, "height": 10, "predictions": [prediction]}


def test_a_new_figure_is_one_class_and_one_line(monkeypatch):
    made: list[Counting] = []

    def setup(setup: Setup) -> Counting | None:
        made.append(Counting())
        return made[-1]

    monkeypatch.setattr(registry, "EVALUATORS", (*registry.EVALUATORS, setup))
    truth = {
        stem: ImageAnnotation(stem, (WNID,), ((WNID, (0, 0, 9, 9)),), 10, 10)
        for stem in ("a", "b", "c")
    }
    records = [record("a", WNID), record("b", "n01751748"), record("c", WNID)]
    report = evaluate(EvalOptions(GroundTruth(truth), SourceOptions(predictions=records)))
    assert made[0].seen == [("a.jpg", True), ("b.jpg", False), ("c.jpg", True)]
    assert report.settings["counted"] == 2
    assert report.localization is not None
    assert report.localization["correct"]["top1_cls"] == 2


def test_each_figure_applies_where_it_can():
    """Records: the ILSVRC figures only; score maps of boxes: MaxBoxAccV2 only; with masks,
    PxAP only; records against masks: no PxAP (it needs the maps)."""
    truth = GroundTruth({"a": ImageAnnotation("a", ("0",), (("0", (0, 0, 9, 9)),), 10, 10)})
    masks = replace(truth, masks={"a": ([], None)})

    def names(truth: GroundTruth, mode: str) -> list[str]:
        setup = Setup(EvalOptions(truth), truth, mode)
        return [type(e).__name__ for e in registry.make_evaluators(setup)]

    assert names(truth, "predictions") == ["IlsvrcLocalization"]
    assert names(truth, "scoremaps") == ["MaxBoxAcc"]
    assert names(masks, "scoremaps") == ["PxAPFigure"]
    assert names(masks, "predictions") == ["IlsvrcLocalization"]
    assert names(truth, "model") == ["IlsvrcLocalization"]


def test_a_damaged_mask_in_a_model_run_is_one_line(fake, tmp_path):
    """PxAP's masks are read where the maps are, inside the pipeline: a mask that is not an
    image stops the run with one line naming it (issue 25, item 10: it was a traceback)."""
    import numpy as np
    from conftest import invoke, model_args, one_line_error
    from PIL import Image

    from cam_cli.data.wsol_metadata import WsolMetadata, write_wsol_metadata

    ids = ("imgs/a.jpg", "imgs/b.jpg")
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((40, 48), 255, dtype=np.uint8)).save(tmp_path / "masks" / "b.png")
    (tmp_path / "masks" / "a.png").write_text("not a PNG")
    masks = {i: (f"masks/{i[5]}.png",) for i in ids}
    sizes = dict.fromkeys(ids, (48, 40))
    metadata = WsolMetadata(ids, {"imgs/a.jpg": 0, "imgs/b.jpg": 1}, sizes, masks=masks)
    write_wsol_metadata(metadata, tmp_path / "meta")
    result = invoke("eval", *model_args(fake), "--wsol-metadata", tmp_path / "meta",
                    "--images", fake, "--mask-root", tmp_path)  # fmt: skip
    one_line_error(result, "a.png", "cannot read the mask")
