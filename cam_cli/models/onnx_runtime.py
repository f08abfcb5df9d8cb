"""A cam-cli ONNX file (`onnx_format`) run by ONNX Runtime, as the network of a run.

`OnnxNetwork` presents what the inference code asks of a `CAMNet`: called on a batch it gives
``(logits, maps)``, and its ``class_weights()`` are ``(None, None)``, since the maps it gives
already are one per class (as a conv classifier's features are): a class's CAM is a gather.
Everything else of a run (decoding, top-k, upsampling, boxes, outputs, metrics) is unchanged.

The graph normalises its uint8 input itself, so the run's preprocessing is `pixels_as_float`:
the pixels as floats, exactly, turned back into uint8 here. ONNX Runtime is an extra (``[onnx]``),
imported only when a file is opened; the onnx package is not needed to run.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cam_cli.errors import InputFileError, SetupError
from cam_cli.files.checks import printable_line, printable_path
from cam_cli.models.onnx_format import INPUT, INSTALL_HINT, OUTPUTS, OnnxDescription
from cam_cli.models.preprocess import Preprocessing

MAX_BYTES = 2**31  # protobuf's bound on one message: `export` writes no larger file


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise SetupError(
            f"`onnx`: ONNX Runtime is not installed; install it with: {INSTALL_HINT}"
        ) from None
    return onnxruntime


def pixels_as_float(description: OnnxDescription) -> Preprocessing:
    """The run's preprocessing for a graph that normalises inside: ``apply`` gives the uint8
    pixels as float32, unchanged (x * 1 + 0), named after the weights' own."""
    name = f"{description.preprocessing.name} (inside the ONNX graph)"
    return Preprocessing(name, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "rgb", 1.0)


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session in place of a `CAMNet`: ``forward(x)`` -> ``(logits [B, C],
    cams [B, C, h, w])`` on ``x``'s device. ``x`` holds uint8 pixel values as floats
    (`pixels_as_float`).

    One session per thread count: a run's CPU lanes call it from single-threaded workers, and
    each gets a session that uses one thread, as their torch forwards do. Every session is made
    from the bytes read once (and hashed: `state_dict`), so a file replaced during a run changes
    nothing. Sessions are shared, not copied (a `Localizer` copies its model; `__deepcopy__`
    keeps this one)."""

    def __init__(self, model: bytes, session: Any) -> None:
        super().__init__()
        self._model = model
        self.digest = hashlib.sha256(model).hexdigest()
        self._sessions = {torch.get_num_threads(): session}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> OnnxNetwork:
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:  # type: ignore[override]
        """Its state is the file: its SHA-256 (what `LoadedModel.digest` hashes)."""
        return {"onnx_sha256": torch.frombuffer(bytearray.fromhex(self.digest), dtype=torch.uint8)}

    def class_weights(self) -> tuple[Tensor | None, Tensor | None]:
        return None, None

    def cam_exact_problem(self) -> str | None:
        return None  # only CAM-exact networks are exported

    def _session(self) -> Any:
        threads = torch.get_num_threads()
        with self._lock:
            if threads not in self._sessions:
                self._sessions[threads] = open_session(self._model, threads)
            return self._sessions[threads]

    @torch.compiler.disable  # ONNX Runtime runs it: `compile_model` leaves it as it is
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pixels = x.detach().to("cpu", torch.uint8).contiguous().numpy()
        logits, cams = self._session().run(list(OUTPUTS), {INPUT: pixels})
        return torch.from_numpy(logits).to(x.device), torch.from_numpy(cams).to(x.device)


def open_session(model: bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session of the serialised ``model`` using ``threads`` threads."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are not the user's problem
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _check_graph(session: Any, description: OnnxDescription) -> str | None:
    """Why the graph is not ``images [N, 3, S, S] uint8 -> (logits [N, C], cams [N, C, h, w])``
    for the metadata's S and C, or None."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT] or [o.name for o in outputs] != list(OUTPUTS):
        return f"its graph is not {INPUT} -> ({', '.join(OUTPUTS)})"
    size, count = description.input_size, len(description.classes)
    if inputs[0].type != "tensor(uint8)" or list(inputs[0].shape[1:]) != [3, size, size]:
        return f"its input is not uint8 [N, 3, {size}, {size}] as its metadata say"
    logits, cams = outputs[0].shape, outputs[1].shape
    if len(logits) != 2 or len(cams) != 4 or logits[1] != count or cams[1] != count:
        return f"its outputs are not logits [N, {count}] and cams [N, {count}, h, w]"
    return None


def open_onnx_network(path: str | Path) -> tuple[OnnxNetwork, OnnxDescription]:
    """The network of a cam-cli ONNX file and what its metadata say. One line (`InputFileError`
    naming the file) for a file that is missing, not regular, not ONNX, or not a cam-cli export;
    `SetupError` saying how to install ONNX Runtime when it is not."""
    name = printable_path(path)
    try:
        info = os.stat(path)
    except OSError as error:
        raise InputFileError(f"{name}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(f"{name}: not a regular file")
    if info.st_size > MAX_BYTES:
        raise InputFileError(f"{name}: over 2 GiB, more than one ONNX file holds")
    import_onnxruntime()
    try:
        with open(path, "rb") as file:
            model = file.read()
    except OSError as error:
        raise InputFileError(f"{name}: {error.strerror or error}") from None
    try:
        session = open_session(model, torch.get_num_threads())
    except Exception as error:  # noqa: BLE001 - ONNX Runtime's own kinds: any is "unreadable"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputFileError(
            f"{name}: not an ONNX model ONNX Runtime can load ({printable_line(first)[:200]})"
        ) from None
    try:
        description = OnnxDescription.from_props(session.get_modelmeta().custom_metadata_map)
    except ValueError as error:
        raise InputFileError(f"{name}: {error}") from None
    problem = _check_graph(session, description)
    if problem is not None:
        raise InputFileError(f"{name}: {problem}")
    return OnnxNetwork(model, session), description
