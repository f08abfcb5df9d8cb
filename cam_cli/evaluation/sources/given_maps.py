"""Score maps someone else made as a source, no model (`GivenMaps`): each map read as
wsolevaluation's evaluators take it (`scoremap_files.load_scoremap`: 2-D, 224x224, in [0, 1]),
as it is (not resized or normalised again), and given to the evaluators that read maps:
MaxBoxAccV2 against boxes, PxAP against masks."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from cam_cli.data.ground_truth import GroundTruth, ImageAnnotation
from cam_cli.data.matching import check_missing, pair_images
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import EvalOptions
from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage
from cam_cli.evaluation.report_settings import maxboxacc_settings
from cam_cli.evaluation.scoremap_files import load_scoremap, scoremaps_to_read
from cam_cli.evaluation.sources.base import Source
from cam_cli.evaluation.wsol_convert import upright_size
from cam_cli.files.checks import printable_path

logger = logging.getLogger(__name__)


class GivenMaps(Source):
    """The maps of ``scoremaps`` (wsolevaluation's layout), matched to the ground truth by the
    image's file stem; with a metadata split's ids only ``<id>.npy`` of those are read, as
    their evaluator reads them, so a folder holding other splits' maps too can be scored.

    Boxes go into the 224x224 grid from the annotated image size; annotations without sizes
    (LOC_val_solution.csv) need the ground truth's ``images`` to read the sizes from. A map
    that cannot be used (unreadable, not 2-D 224x224 float in [0, 1], NaN) is a failed image,
    named on stderr and in the report: a miss at every threshold, left out of PxAP's curve."""

    mode = "scoremaps"

    def __init__(self, options: EvalOptions, truth: GroundTruth) -> None:
        super().__init__()
        self.truth = truth
        self.allow_missing = options.metrics.allow_missing
        if options.source.scoremaps is None:
            raise EvaluationError("give the folder of `scoremaps`")
        self.maps = scoremaps_to_read(options.source.scoremaps, truth.image_ids)
        self.image_of: dict[str, Path] = {}
        if truth.masks is None:  # boxes: sizes for the grid, from the images if need be
            metrics = options.metrics
            self.settings = maxboxacc_settings(
                metrics.maxboxacc_protocol, None, metrics.cam_threshold_from
            )
            if truth.images is not None:
                paired, _ = pair_images(truth.images, truth.annotations)
                self.image_of = {printable_path(a.image_id): path for path, a in paired}

    def images(self, evaluators: Sequence[Evaluator]) -> Iterator[ScoredImage]:
        on_maps = [evaluator for evaluator in evaluators if evaluator.reads_maps]
        by_id = {printable_path(image_id): a for image_id, a in self.truth.annotations.items()}
        matched = 0
        for stem, path in self.maps.items():
            annotation = by_id.get(stem)
            if annotation is None:
                self.missing.without_annotation.append(str(path))
                continue
            matched += 1
            width, height = (0, 0)  # masks are resized to the map: no size needed
            if self.truth.masks is None:
                width, height = _image_size(annotation, self.image_of.get(stem), path)
            name = printable_path(str(path))
            try:
                scoremap = load_scoremap(path)
            except ValueError as error:  # named on stderr and in the report's failed list
                logger.error("%s: %s", name, error)
                yield ScoredImage(annotation, name, error=str(error))
                continue
            found = {e.key: e.on_map(scoremap, annotation, width, height) for e in on_maps}
            yield ScoredImage(annotation, name, from_map=found)
        self.missing.without_image.extend(sorted(s for s in by_id if s not in self.maps))
        check_missing(self.missing, self.allow_missing, "score maps")
        if not matched:
            what = "a mask" if self.truth.masks is not None else "an annotation"
            raise EvaluationError(f"no score map matches {what}: nothing to score")


def _image_size(annotation: ImageAnnotation, image: Path | None, scoremap: Path) -> tuple[int, int]:
    """The annotated image's size, from the annotation or else the image file's header."""
    if annotation.width is not None and annotation.height is not None:
        return annotation.width, annotation.height
    if image is None:
        raise EvaluationError(
            f"{scoremap}: the size of image {annotation.image_id} is unknown (these annotations "
            "state none); give `images` to read it from the image files"
        )
    try:
        return upright_size(image)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
