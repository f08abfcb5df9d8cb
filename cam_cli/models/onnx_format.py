"""What a cam-cli ONNX file is: its input, its outputs, and the metadata that describes them.

One graph, ``images -> (logits, cams)``:
- ``images``: uint8 RGB ``[N, 3, S, S]``, the whole image resized to ``S x S`` (bilinear, no
  crop), N dynamic. The normalisation of the weights is inside the graph, so a deployment only
  decodes and resizes; the metadata states it too (mean, std, channel order, divisor).
- ``logits``: float32 ``[N, C]``, before the softmax.
- ``cams``: float32 ``[N, C, h, w]``: every class's map at the features' resolution, before
  upsampling. All classes rather than a top-k fixed at export: `class`, ``eval``'s
  ground-truth classes and any k are then a gather, and the maps cost one matrix product of
  the features, a small part of the network's own work.

The metadata are plain ``metadata_props`` strings (JSON where a value is a list), readable by
any ONNX tool. Nothing here imports onnx or torch: the exporter (`onnx_export`) and the runtime
(`onnx_runtime`) both use it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from cam_cli.data.classes import ClassInfo
from cam_cli.models.preprocess import Preprocessing

FORMAT = "cam-cli CAM network, version 1"
INPUT = "images"
OUTPUTS = ("logits", "cams")
OPSET = 18
INSTALL_HINT = 'pip install "cam-cli[onnx]"'
RESIZE = (
    "whole image to input_size x input_size, bilinear (PIL; a JPEG draft-decoded at no "
    "less than that size first), no crop"
)
MAX_CLASSES = 1_000_000  # a bound on what a file may claim before anything is built from it

# metadata_props keys; each holds a string
KEYS = ("format", "cam_cli_version", "arch", "input", "input_size", "resize", "normalization",
        "mean", "std", "channel_order", "divide_by", "classes", "cam_threshold", "outputs",
        "exporter", "opset")  # fmt: skip


@dataclass(frozen=True)
class OnnxDescription:
    """What the metadata of a cam-cli ONNX file say (`to_props`, `from_props`)."""

    arch: str
    classes: list[ClassInfo]
    preprocessing: Preprocessing
    input_size: int
    cam_threshold: float | None = None
    version: str = ""
    exporter: str = ""
    opset: int = OPSET

    def to_props(self) -> dict[str, str]:
        """The metadata_props strings, in `KEYS` order (no ``cam_threshold`` without one)."""
        p = self.preprocessing
        props = {
            "format": FORMAT,
            "cam_cli_version": self.version,
            "arch": self.arch,
            "input": f"{INPUT}: uint8 RGB NCHW [N, 3, {self.input_size}, {self.input_size}], "
            "N dynamic; normalised inside the graph",
            "input_size": str(self.input_size),
            "resize": RESIZE,
            "normalization": p.name,
            "mean": json.dumps(list(p.mean)),
            "std": json.dumps(list(p.std)),
            "channel_order": p.channel_order,
            "divide_by": json.dumps(p.divide_by),
            "classes": json.dumps([[c.wnid, c.name] for c in self.classes]),
            "outputs": "logits: float32 [N, C] before the softmax; cams: float32 [N, C, h, w], "
            "every class's map (sum_k w_k^c f_k) before upsampling",
            "exporter": self.exporter,
            "opset": str(self.opset),
        }
        if self.cam_threshold is not None:
            props["cam_threshold"] = json.dumps(self.cam_threshold)
        return {key: props[key] for key in KEYS if key in props}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> OnnxDescription:
        """The description a file's metadata give; ValueError with a one-line reason when
        they are not a cam-cli export's or hold values no run can use."""
        if props.get("format") != FORMAT:
            raise ValueError("not a cam-cli export (its metadata name no cam-cli format)")
        try:
            size = int(props["input_size"])
            raw_classes = json.loads(props["classes"])
            preprocessing = Preprocessing.from_dict(
                {
                    "name": props["normalization"],
                    "mean": json.loads(props["mean"]),
                    "std": json.loads(props["std"]),
                    "channel_order": props["channel_order"],
                    "divide_by": json.loads(props["divide_by"]),
                }  # fmt: skip
            )
            given = props.get("cam_threshold")
            threshold = None if given is None else float(json.loads(given))
            opset = int(props.get("opset", OPSET))
        except (KeyError, TypeError, ValueError) as error:
            missing = f"no {error.args[0]!r}" if isinstance(error, KeyError) else str(error)
            raise ValueError(f"metadata unusable: {missing}") from None
        if not 1 <= size <= 4096:
            raise ValueError(f"metadata unusable: input_size {size} is not in 1..4096")
        if not isinstance(raw_classes, list) or not 1 <= len(raw_classes) <= MAX_CLASSES:
            raise ValueError("metadata unusable: classes is not a list of 1 to 10^6 classes")
        classes = []
        for i, entry in enumerate(raw_classes):
            if not (isinstance(entry, list) and len(entry) == 2
                    and all(v is None or isinstance(v, str) for v in entry)):  # fmt: skip
                raise ValueError(f"metadata unusable: class {i} is not [wnid, name]")
            classes.append(ClassInfo(i, entry[0], entry[1]))
        if threshold is not None and not (math.isfinite(threshold) and 0 <= threshold < 1):
            raise ValueError(f"metadata unusable: cam_threshold {threshold} is not in [0, 1)")
        return cls(str(props.get("arch", "unknown")), classes, preprocessing, size, threshold,
                   props.get("cam_cli_version", ""), props.get("exporter", ""), opset)  # fmt: skip
