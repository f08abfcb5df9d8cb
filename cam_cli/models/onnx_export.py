"""`cam-cli export`: a CAM network, whole, as one ONNX file (`onnx_format` says what it holds).

CAM needs no gradient: a class's map is one matrix product of the last features, so the
network and its maps export as one graph and run anywhere ONNX Runtime does. Only networks
whose CAMs are exact (`CAMNet.cam_exact_problem`) are exported.

The exporter is torch's own (``torch.onnx.export(dynamo=True)``, which needs the onnx and
onnxscript packages: the ``[onnx]`` extra); onnx is imported only here and only when asked.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cam_cli import __version__
from cam_cli.errors import NotCAMExact, SetupError
from cam_cli.files.atomic import write_bytes_atomic
from cam_cli.files.checks import check_output_file, check_outputs_spare_inputs, printable_path
from cam_cli.models.camnet import CAMNet
from cam_cli.models.loading import LoadedModel, load_model
from cam_cli.models.onnx_format import INPUT, INSTALL_HINT, OPSET, OUTPUTS, OnnxDescription
from cam_cli.models.preprocess import Preprocessing
from cam_cli.models.registry import build_model, get_arch
from cam_cli.settings import ModelOptions

logger = logging.getLogger(__name__)

PROTOBUF_LIMIT = 2**31 - 1  # one protobuf message; larger models would need external data


@dataclass(frozen=True)
class ExportSummary:
    """What `export_onnx` wrote: the command prints it as one JSON line."""

    output: str
    arch: str
    num_classes: int
    input_size: int
    opset: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class CamGraph(nn.Module):
    """The exported computation: uint8 pixels -> the weights' normalisation (the same
    arithmetic as `Preprocessing.apply`) -> the network -> (logits, every class's CAM)."""

    shift: Tensor
    scale: Tensor

    def __init__(self, model: CAMNet, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model = model
        mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
        std = torch.tensor(preprocessing.std).view(1, 3, 1, 1)
        self.register_buffer("shift", -mean / std)
        self.register_buffer("scale", 1.0 / (std * preprocessing.divide_by))
        self.bgr = preprocessing.channel_order == "bgr"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images.float()
        if self.bgr:
            x = x.flip(1)
        logits, features = self.model(torch.addcmul(self.shift, x, self.scale))
        weight, _ = self.model.class_weights()
        if weight is None:  # a conv classifier: the features are one map per class already
            return logits, features
        return logits, torch.einsum("ck,bkhw->bchw", weight, features)  # M_c = sum_k w_k^c f_k


def _require_exporter() -> str:
    """The exporter's name and versions; a one-line `SetupError` saying how to install it."""
    try:
        import onnx  # noqa: F401 - torch.onnx.export(dynamo=True) needs it
        import onnxscript
    except ImportError:
        raise SetupError(
            f"export needs the onnx and onnxscript packages; install them with: {INSTALL_HINT}"
        ) from None
    return (f"torch.onnx.export(dynamo=True), torch {torch.__version__}, "
            f"onnxscript {onnxscript.__version__}")  # fmt: skip


def _model_files(options: ModelOptions) -> dict:
    weights = None if options.weights in (None, "imagenet") else options.weights
    return {"`weights`": weights, "`checkpoint`": options.checkpoint,
            "`classes_file`": options.classes_file}  # fmt: skip


def _onnx_bytes(loaded: LoadedModel, exporter: str, opset: int) -> bytes:
    """The exported graph with its metadata, serialised. torch's exporter talks on stdout and
    warns about its internals: both are kept from the command's own output."""
    graph = CamGraph(loaded.model, loaded.preprocessing).eval()
    size = loaded.input_size
    example = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_shapes={"images": {0: batch}},
            verbose=False,
        )
    if program is None:  # torch returns None only for a legacy export to a file
        raise SetupError(f"{loaded.arch}: torch.onnx.export returned no program")
    proto = program.model_proto
    description = OnnxDescription(
        arch=loaded.arch,
        classes=loaded.classes,
        preprocessing=loaded.preprocessing,
        input_size=size,
        cam_threshold=loaded.cam_threshold,
        version=__version__,
        exporter=exporter,
        opset=opset,
    )
    del proto.metadata_props[:]
    for key, value in description.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "cam-cli", __version__
    proto.doc_string = (f"cam-cli export of {loaded.arch}: uint8 RGB images -> logits and "
                        "class activation maps; see metadata_props")  # fmt: skip
    if proto.ByteSize() > PROTOBUF_LIMIT:
        raise SetupError(f"{loaded.arch}: over 2 GiB as one ONNX file; not supported")
    return proto.SerializeToString()


def _check_cam_exact(arch: str, model: CAMNet | None = None) -> None:
    """`NotCAMExact` for a network whose head is not GAP + linear; ``model=None``: the
    architecture built on the meta device (no memory, no weights)."""
    if model is None:
        with torch.device("meta"):
            model = build_model(arch, 2)
    problem = model.cam_exact_problem()
    if problem is not None:
        raise NotCAMExact(f"{arch}: not exported: {problem}, so its CAMs are not exact")


def export_onnx(model: ModelOptions, output: str | Path, *, opset: int = OPSET) -> ExportSummary:
    """``model`` (a checkpoint, or an architecture and its weights) as an ONNX file at
    ``output``, written atomically and never over one of the files it was read from.

    Raises `NotCAMExact` for a network whose CAMs are not exact (its head is not GAP + linear),
    `SetupError` for anything else that cannot work, each with a one-line reason."""
    check_output_file(output, "`output`")
    exporter = _require_exporter()
    check_outputs_spare_inputs({"`output`": output}, _model_files(model))
    if model.arch is not None and model.checkpoint is None:
        try:
            arch = get_arch(model.arch).name
        except KeyError:
            pass  # load_model says so
        else:
            _check_cam_exact(arch)  # before any weights are read
    loaded = load_model(model, device="cpu")
    _check_cam_exact(loaded.arch, loaded.model)
    logger.info("exporting %s (opset %d)...", loaded.arch, opset)
    data = _onnx_bytes(loaded, exporter, opset)
    write_bytes_atomic(data, output)
    logger.info("wrote %s", printable_path(output))
    return ExportSummary(str(output), loaded.arch, len(loaded.classes), loaded.input_size,
                         opset, len(data))  # fmt: skip
