"""MaxBoxAccV2's protocols: how a CAM and its ground truth become boxes, one field per
ingredient, by name (`MAXBOXACC_PROTOCOLS`): ``wsol`` (wsolevaluation's rules, the default) and
``cam-cli`` (the figure before them); and the score map each scores (`scoremap_of_cam`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cam_cli.evaluation.maxboxacc.wsol_protocol import normalize_scoremap, scoremap_from_cam
from cam_cli.settings import MaxBoxAccProtocolName


@dataclass(frozen=True)
class MaxBoxAccProtocol:
    """How MaxBoxAccV2 turns a CAM and ground truth into boxes, one field per ingredient, so
    each difference from wsolevaluation can be switched on alone and measured.

    ``resize``: the CAM from feature resolution to 224x224, ``cubic`` (``cv2.INTER_CUBIC``,
    theirs) or ``bilinear`` (cam-cli's pipeline upsampling). ``gt_boxes``: ground truth into
    that grid, ``truncate`` (their ``resize_bbox``) or ``outward`` (cam-cli's `scale_boxes`).
    ``boxes``: ``contours`` (every ``findContours`` contour, holes too, ``boundingRect``'s
    ``x + w``, ``[0, 0, 0, 0]`` for an empty mask) or ``components`` (the tight box of each
    8-connected component; an empty mask has none). ``input_size_cam``: score the CAM the
    pipeline upsampled to the network input (cam-cli before this protocol existed; the GPU
    sweep computes this one) instead of resizing the feature-resolution CAM here.
    """

    name: str
    resize: str = "cubic"
    gt_boxes: str = "truncate"
    boxes: str = "contours"
    input_size_cam: bool = False


MAXBOXACC_PROTOCOLS: dict[str, MaxBoxAccProtocol] = {
    # wsolevaluation's BoxEvaluator, rule for rule: the default
    MaxBoxAccProtocolName.wsol: MaxBoxAccProtocol(MaxBoxAccProtocolName.wsol.value),
    # what cam-cli computed before: the bilinear input-size CAM, outward-rounded ground truth,
    # tight component boxes (the README's old 63.44); also what the GPU sweep computes
    MaxBoxAccProtocolName.cam_cli: MaxBoxAccProtocol(
        MaxBoxAccProtocolName.cam_cli.value,
        resize="bilinear",
        gt_boxes="outward",
        boxes="components",
        input_size_cam=True,
    ),
}


def maxboxacc_protocol(protocol: str | MaxBoxAccProtocol) -> MaxBoxAccProtocol:
    """A protocol by name (`MAXBOXACC_PROTOCOLS`), or the one given."""
    if isinstance(protocol, MaxBoxAccProtocol):
        return protocol
    if protocol not in MAXBOXACC_PROTOCOLS:
        names = ", ".join(MAXBOXACC_PROTOCOLS)
        raise ValueError(f"unknown MaxBoxAccV2 protocol {protocol!r}; expected one of {names}")
    return MAXBOXACC_PROTOCOLS[protocol]


def scoremap_of_cam(cam: np.ndarray, protocol: MaxBoxAccProtocol) -> np.ndarray:
    """The score map a protocol scores for an image's CAM, in [0, 1]: wsolevaluation's 224x224
    map of the feature-resolution CAM (`wsol_protocol.scoremap_from_cam`, what
    ``save_scoremaps`` writes), or with ``input_size_cam`` the CAM at the network's input
    size, normalised (`wsol_protocol.normalize_scoremap`)."""
    if protocol.input_size_cam:
        return normalize_scoremap(cam)
    return scoremap_from_cam(cam, protocol.resize)
