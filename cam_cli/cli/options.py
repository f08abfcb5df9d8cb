"""What every command shares: its options, how it reports, how an error ends it.

No torch here (nor in the command modules' top level), so `cam-cli --help` answers at once.
Exit codes: 0 all good, 1 some inputs failed (each named on stderr), 2 usage error.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

from cam_cli.errors import ArgumentError, CamCliError, RunFailed, SetupError
from cam_cli.runtime.distributed import is_main_process
from cam_cli.settings import BoxBackend, BoxRule, DecodeMode, Normalization

if TYPE_CHECKING:  # the types only: importing them pulls in torch
    from cam_cli.outputs.runs import RunSummary
    from cam_cli.settings import ModelOptions, RunOptions

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
LOGGER = "cam_cli"


# Not one of the other ranks torchrun started. Rank 0 speaks for them all: it prints the
# errors (every rank exits 2 on a usage error) and the end of the run, whose exit code is its
# own (the others exit 0, since torchrun stops every rank once one exits non-zero, and rank 0
# may still be writing then).
main_process = is_main_process


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    if main_process():
        from cam_cli.files.checks import printable_line

        typer.echo(f"cam-cli: error: {printable_line(message)}", err=True)
    return typer.Exit(code)


def reader_gone() -> typer.Exit:
    """stdout's reader has gone (``cam-cli bbox ... | head -1``): exit 0 without a message.
    stdout is pointed at /dev/null first, so the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test runner's buffer)
        pass
    return typer.Exit(EXIT_OK)


# Library argument -> the flag that sets it, where the flag is not ``--`` + the name with
# dashes. Every library message names arguments in backticks (`errors`); `as_flags` rewrites them.
FLAGS: dict[str, str] = {
    "compile_model": "--compile",
    "classes_file": "--classes",
    "json_report": "--json",
    "box_backend": "--box-step",
    "method": "--method",
    "layer": "--layer",
    "html_report": "--report",
}
_ARGUMENT = re.compile(r"`([a-z][a-z0-9_]*)`")


def flag(argument: str) -> str:
    """The option that sets a library argument: ``box_rule`` -> ``--box-rule``."""
    return FLAGS.get(argument, "--" + argument.replace("_", "-"))


def as_flags(text: str) -> str:
    """A library line as the CLI says it: each argument named in backticks becomes its flag
    (```per_image`: not a regular file`` -> ``--per-image: not a regular file``)."""
    return _ARGUMENT.sub(lambda match: flag(match.group(1)), text)


def exit_code(error: CamCliError) -> int:
    """The one place an error's kind becomes an exit code: a run that failed on the way 1,
    inputs or options that cannot work 2."""
    return EXIT_SOME_FAILED if isinstance(error, RunFailed) else EXIT_USAGE


def message(error: CamCliError) -> str:
    """The error's line as the CLI says it: an argument named by its option."""
    if isinstance(error, ArgumentError):
        return as_flags(f"{flag(error.argument)} {error.problem}")
    return as_flags(str(error))


@contextmanager
def errors_as_exit(advice: dict[type[CamCliError], str] | None = None) -> Iterator[None]:
    """A cam-cli error (or an OS error: a folder that cannot be written) ends the command with
    one line and the exit code of its kind (`exit_code`), never a traceback. ``advice``: a
    sentence the command adds after errors of a kind (what to change on its command line)."""
    try:
        yield
    except CamCliError as error:
        text = message(error)
        for kind, sentence in (advice or {}).items():
            if isinstance(error, kind):
                text = f"{text}. {sentence}"
        raise fail(text, exit_code(error)) from None
    except BrokenPipeError:  # `| head`: the reader is gone; not an error, nothing to say
        raise reader_gone() from None
    except OSError as error:
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        raise fail(f"{where}{error.strerror or error}") from None


def check_before_work(
    *,
    inputs: dict | None = None,
    outputs: dict | None = None,
    output_dirs: dict | None = None,
    input_size: int | None = None,
    input_size_option: str = "--input-size",
) -> None:
    """What every command checks before its first image, each failure one line and exit 2:
    sizes in range, output files and folders writable (a FILE not a directory), and no output
    that is one of the inputs (``{option: path}``; see `files.checks`)."""
    from cam_cli.files import checks

    outputs, output_dirs = outputs or {}, output_dirs or {}
    try:
        checks.check_input_size(input_size, input_size_option)
        for option, path in outputs.items():
            checks.check_output_file(path, option)
        for option, path in output_dirs.items():
            checks.check_output_dir(path, option)
        checks.check_not_an_input(outputs, inputs or {})
    except SetupError as error:
        raise fail(message(error)) from None


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it), arguments
    named as flags (`as_flags`)."""

    def emit(self, record: logging.LogRecord) -> None:
        from cam_cli.files.checks import printable_line

        try:
            sys.stderr.write(printable_line(as_flags(self.format(record))) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never stop a run
            self.handleError(record)


def _keeps_notes(record: logging.LogRecord) -> bool:
    """``--quiet``'s filter: progress messages (INFO) go, notes that change what a result
    means (INFO lines starting ``note:``, e.g. clipped boxes, skipped classes) and problems
    (WARNING) stay."""
    return record.levelno > logging.INFO or str(record.msg).startswith("note:")


def configure_logging(quiet: bool = False) -> None:
    """The library's messages (INFO) and per-image problems (WARNING) as ``cam-cli: ...``
    lines on stderr; ``--quiet`` keeps the notes and the problems only (`_keeps_notes`), the
    other ranks under torchrun the problems only."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("cam-cli: %(message)s"))
    if quiet:
        handler.addFilter(_keeps_notes)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if main_process() else logging.WARNING)
    logger.propagate = False


def progress(quiet: bool) -> bool | None:
    """A progress bar unless --quiet; ``None`` lets tqdm show it only on a terminal."""
    return False if quiet else None


# ---- options shared by every command that runs a model ---------------------------------------
Arch = Annotated[
    str | None,
    typer.Option("--arch", "-a", help="Network from `cam-cli models`.", show_default=False),
]
Weights = Annotated[
    str | None,
    typer.Option(
        help="'imagenet' (torchvision's download) or a state_dict FILE. "
        "Leave out with --checkpoint.",
        show_default=False,
    ),
]
Checkpoint = Annotated[
    Path | None,
    typer.Option(
        help="A checkpoint written by `cam-cli train` (self-describing).", show_default=False
    ),
]
ClassesFile = Annotated[
    Path | None,
    typer.Option(
        "--classes",
        help="LOC_synset_mapping.txt: class order, wnids and names.",
        show_default=False,
    ),
]
Normalize = Annotated[
    Normalization | None,
    typer.Option(
        help="Input normalization of the weights: 'imagenet' (RGB, mean/std; default) or 'caffe' "
        "(BGR, 0..255, minus 104/117/123).",
        show_default=False,
    ),
]
InputSize = Annotated[
    int | None,
    typer.Option(
        help="Network input size; the whole image is resized to it (no crop).", show_default=False
    ),
]
OnnxFile = Annotated[
    Path | None,
    typer.Option(
        "--onnx",
        help="A FILE.onnx written by `cam-cli export`, run by ONNX Runtime instead of PyTorch "
        "(classes, preprocessing and input size come from it). Needs the [onnx] extra.",
        show_default=False,
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per forward pass.")]
Workers = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="DataLoader processes decoding images; 0 decodes in a thread beside the forward. "
        "Default: 0 on a CPU of up to 8 cores, one per 8 cores above that, up to 8 with CUDA.",
        show_default=False,
    ),
]
Fast = Annotated[
    bool | None,
    typer.Option(
        "--fast/--no-fast",
        help="Low precision: bf16 autocast on the CPU, bf16 (or fp16) on CUDA; localization "
        "within 0.5 points of fp32. Default: on for CUDA and for CPUs with native bf16, off "
        "elsewhere. --no-fast: fp32.",
        show_default=False,
    ),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the network first: a one-time cost (reported; ~35 s for GoogLeNet "
        "on a 2-core CPU, where it gained ~3%) that pays off where the compiler speeds the "
        "forward up. Same results; falls back to eager if it fails.",
    ),
]
Decode = Annotated[
    DecodeMode,
    typer.Option(
        help="Where JPEGs are decoded: 'device' decodes baseline JPEGs in batches on the "
        "model's device (nvJPEG on CUDA) and everything else with PIL; 'pil' decodes all with "
        "PIL in the workers; 'auto' is 'device' on CUDA and 'pil' elsewhere.",
    ),
]
BoxBackendOption = Annotated[
    BoxBackend,
    typer.Option(
        "--box-step",
        help="Where CAMs become boxes (all give the same boxes): 'scipy' on the host, 'torch' "
        "(batched PyTorch) or 'triton' (a union-find kernel, CUDA) on the model's device; "
        "'auto' is scipy on the CPU, triton on CUDA where it runs, else torch.",
    ),
]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress bar nor progress messages; notes and problems stay."
    ),
]
Images = Annotated[
    list[str] | None,
    typer.Option(
        "--images",
        "-i",
        help="Image file, directory (walked recursively) or '-' (paths from stdin). Repeatable; "
        "extra arguments are taken as images too.",
        show_default=False,
    ),
]
ExtraImages = Annotated[list[str] | None, typer.Argument(show_default=False, hidden=True)]
TopK = Annotated[
    int, typer.Option("--topk", "-k", min=1, help="Boxes for the k most probable classes.")
]
Threshold = Annotated[
    float,
    typer.Option(min=0.0, max=0.999, help="Segment CAM values above this fraction of the max."),
]
ModelThreshold = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=0.999,
        help="Segment CAM values above this fraction of the max. Default: the threshold a "
        "--checkpoint carries (chosen on training boxes), else 0.2.",
        show_default=False,
    ),
]
BoxRuleOption = Annotated[
    BoxRule,
    typer.Option(
        "--box-rule",
        help="paper: the box of the largest component above --threshold x max (the paper's "
        "text); zhou2016: the released code's generator (dt_box 20 100 110 on the 8-bit map at "
        "the image's size), boxes ranked; all-components: every component's box, largest "
        "first. Records of the ranked rules carry all boxes as 'boxes'.",
    ),
]
METHOD_NAMES = (
    "cam",
    "gradcam",
    "gradcam++",
    "xgradcam",
    "layercam",
    "hirescam",
    "scorecam",
    "eigencam",
)  # fmt: skip  (the library checks the name: `inference.map_methods`)
Method = Annotated[
    str,
    typer.Option(
        "--method",
        metavar="|".join(METHOD_NAMES),
        help="Where the maps come from: cam (the paper's exact CAM, the default) or a method "
        "that reads a layer: gradcam, gradcam++, xgradcam, layercam, hirescam, scorecam, "
        "eigencam (as pytorch-grad-cam defines them; these also run on networks whose head is "
        "not CAM-exact). Boxes and metrics are the same for every method.",
    ),
]
Layer = Annotated[
    str | None,
    typer.Option(
        "--layer",
        metavar="NAME",
        help="The layer a method other than cam reads, as named_modules() names it (e.g. "
        "features.18); default: the network's, printed on stderr.",
        show_default=False,
    ),
]
TenCrop = Annotated[
    bool,
    typer.Option(
        "--ten-crop",
        help="The released ten-crop CAM: image resized to 256, four corner and centre 224 crops "
        "and their mirrors, maps put back and their absolute values summed, then resized to "
        "the image before boxing; classes from the mean of the crops' scores. 10x the work.",
    ),
]
ClassQuery = Annotated[
    list[str] | None,
    typer.Option(
        "--class",
        help="Use this class (index, wnid or name) for every image instead of the top-k. "
        "Repeatable.",
        show_default=False,
    ),
]


# ---- option groups: declared once, spliced into each command that takes them -----------------
class OptionGroup:
    """A dataclass whose fields are options (typer ``Annotated`` aliases and their defaults).

    A command takes the whole group as one parameter (``model: ModelArgs = ModelArgs()``);
    `with_option_groups` puts the fields in its place on the command line, in field order, so
    a group's options are declared once and read the same in every command's ``--help``."""


@dataclass(frozen=True)
class ModelArgs(OptionGroup):
    """Where the model comes from: the options of `settings.ModelOptions`."""

    arch: Arch = None
    weights: Weights = None
    checkpoint: Checkpoint = None
    classes: ClassesFile = None
    normalize: Normalize = None
    input_size: InputSize = None

    def options(self) -> ModelOptions:
        """The library's `ModelOptions` (imported here: it pulls in torch)."""
        from cam_cli.settings import ModelOptions

        return ModelOptions(
            arch=self.arch,
            weights=self.weights,
            checkpoint=self.checkpoint,
            classes_file=self.classes,
            normalize=None if self.normalize is None else self.normalize.value,
            input_size=self.input_size,
        )

    def inputs(self, images: list[str] | None = None) -> dict:
        """The input files of a model run, as `check_before_work` takes them."""
        weights_file = None if self.weights in (None, "imagenet") else self.weights
        return {"--weights": weights_file, "--checkpoint": self.checkpoint,
                "--classes": self.classes, "--images": images}  # fmt: skip


@dataclass(frozen=True)
class ModelOrOnnxArgs(ModelArgs):
    """`ModelArgs`, or an exported ONNX file in their place (`bbox`, `cam`, `eval`)."""

    onnx: OnnxFile = None

    def options(self) -> ModelOptions:
        from dataclasses import replace

        return replace(super().options(), onnx=self.onnx)

    def inputs(self, images: list[str] | None = None) -> dict:
        return {**super().inputs(images), "--onnx": self.onnx}


@dataclass(frozen=True)
class RunArgs(OptionGroup):
    """How the model runs: the options of `settings.RunOptions`."""

    batch_size: BatchSize = 32
    workers: Workers = None
    device: Device = "auto"
    fast: Fast = None
    compile_model: Compile = False
    decode: Decode = DecodeMode.auto
    box_backend: BoxBackendOption = BoxBackend.auto

    def options(self, quiet: bool) -> RunOptions:
        """The library's `RunOptions` (imported here: it pulls in torch)."""
        from cam_cli.settings import RunOptions

        return RunOptions(
            batch_size=self.batch_size,
            workers=self.workers,
            device=self.device,
            fast=self.fast,
            compile_model=self.compile_model,
            progress=progress(quiet),
            decode=DecodeMode(self.decode).value,
            box_backend=BoxBackend(self.box_backend).value,
        )


def with_option_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` as typer sees it: each `OptionGroup` parameter replaced by the group's
    fields (same names, annotations and defaults), and the group rebuilt from them at call."""
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, type] = {}
    parameters = []
    for parameter in signature.parameters.values():
        group = parameter.annotation
        if not (isinstance(group, type) and issubclass(group, OptionGroup)):
            parameters.append(parameter)
            continue
        assert is_dataclass(group), group  # every option group is a dataclass
        groups[parameter.name] = group
        hints = get_type_hints(group, include_extras=True)
        parameters += [
            inspect.Parameter(f.name, parameter.kind, default=f.default, annotation=hints[f.name])
            for f in fields(group)
        ]

    @functools.wraps(command)
    def run(**given: Any) -> Any:
        for name, group in groups.items():
            given[name] = group(**{f.name: given.pop(f.name) for f in fields(group)})
        return command(**given)

    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


def end_of_run(summary: RunSummary, what: str = "images") -> None:
    """`RunSummary` -> the closing line and exit code 1 when some inputs failed."""
    if summary.failed and main_process():
        typer.echo(f"cam-cli: {summary.failed} of {summary.images} {what} failed", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)
