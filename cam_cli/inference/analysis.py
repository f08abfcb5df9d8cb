"""What a caller of `Localizer.localize` wants of every image besides its top-k boxes.

One object per run: which maps to keep on the results, which classes to map besides the top-k,
and two hooks the pipeline calls where the data is: `Analysis.on_device` with a batch's extra
CAMs still on the network's device, `Analysis.on_host` with each good image's result, in a lane
or the box thread (beside the network). Evaluation's analysis scores MaxBoxAccV2 and PxAP
there (`evaluation.model_run`); `write_boxes` draws, `write_cams` renders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from cam_cli.data.batches import ImageBatch
    from cam_cli.inference.results import ImageResult

ExtraCams = Literal["input", "feature"]


class Analysis:
    """This base wants nothing more than the boxes, unless told (or a subclass says so):

    ``keep_cams``: the top-k CAMs at feature resolution on `ImageResult.cams`;
    ``extra_classes(path)``: classes whose CAM and box are wanted for that image besides the
    top-k (the same number for every image), e.g. its true class, on `ImageResult.extra`;
    ``extra_cams``: keep those classes' CAMs on `ImageResult.extra_cams`, at the network's
    ``"input"`` size or at ``"feature"`` resolution.
    """

    def __init__(
        self,
        *,
        keep_cams: bool = False,
        extra_classes: Callable[[str], Sequence[int]] | None = None,
        extra_cams: ExtraCams | None = None,
    ) -> None:
        self.keep_cams = keep_cams
        self.extra_classes = extra_classes
        self.extra_cams = extra_cams

    def on_device(
        self, batch: ImageBatch, cams: torch.Tensor
    ) -> Sequence[object] | torch.Tensor | None:
        """Per-image work on the extra classes' CAMs ``[B, m, S, S]`` of ``batch``'s good images,
        on the device, batch by batch: one value per image (kept on `ImageResult.analysis`),
        or None for none. A tensor ``[B, ...]`` left on the device is copied to the host with
        the rest of the batch (one host wait), each image getting its row; work queued here
        runs on the calling thread's stream, and should not wait for the device."""
        return None

    def on_host(self, result: ImageResult) -> None:
        """Per-image work on a good image's result, where its boxes are made (a lane or the box
        thread), so heavy work runs beside the network; it may set ``result.analysis`` and must
        be thread-safe."""
