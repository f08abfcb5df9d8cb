"""The entry point: the `cam-cli` app, with each command module registered on it.

The command modules never import this one, so the order of `--help` is the order below.
"""

from __future__ import annotations

import sys
import time

import typer

from cam_cli import __version__
from cam_cli.cli import bbox, boxes, cam, convert, evaluate, export, models, synth, train
from cam_cli.cli.options import EXIT_USAGE, main_process, reader_gone

RANK_ZERO_SPEAKS_FIRST_S = 3.0

app = typer.Typer(
    name="cam-cli",
    help=(
        "Weakly-supervised object localization with Class Activation Mapping "
        "(Zhou et al., CVPR 2016): train a GAP network on image labels, then get CAMs, boxes and "
        "ILSVRC localization error.\n\n"
        "Examples:\n\n"
        "  cam-cli models\n\n"
        "  cam-cli bbox --arch mobilenet_v2 --weights mobilenet_v2-imagenet.pth "
        "--classes LOC_synset_mapping.txt --images photos/ > boxes.jsonl\n\n"
        "  cam-cli cam --arch resnet18 --weights imagenet --images cat.jpg --out cams/"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cam-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print cam-cli's version and exit.",
    ),
) -> None:
    # No docstring: the app's help above stays the help of `cam-cli --help`.
    pass


app.command()(models.models)
app.command()(bbox.bbox)
app.command()(cam.cam)
app.command()(boxes.boxes)
app.command()(synth.synth)
app.command("eval")(evaluate.eval_command)
app.command()(convert.convert)
app.command(help=train.HELP)(train.train)
app.command()(export.export)


def main() -> None:
    """Console entry point: click's usage errors exit 2, our own errors say what to do."""
    try:
        if main_process():
            app()
        else:
            sys.exit(_other_rank())
    except KeyboardInterrupt:
        typer.echo("cam-cli: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `cam-cli bbox ... | head` closes the pipe early; not an error
        reader_gone()
        sys.exit(0)


def _other_rank() -> int:
    """A rank other than 0 under torchrun: the same command, but click's usage errors go
    unprinted (rank 0 prints them once for all). Exit code 2 for a usage error, as on rank 0;
    0 at the end of a run, whose code is rank 0's (`options.main_process`).

    After a usage error this rank waits a moment before it exits: torchrun stops every rank as
    soon as one exits non-zero, and rank 0 must have said what is wrong by then."""
    try:
        code = app(standalone_mode=False) or 0  # typer.Exit(code) comes back as the code
    except Exception as error:
        exit_code = getattr(error, "exit_code", None)
        if not hasattr(error, "show") or not isinstance(exit_code, int):
            raise
        code = exit_code  # a click usage error (ClickException)
    if code == EXIT_USAGE:
        time.sleep(RANK_ZERO_SPEAKS_FIRST_S)
    return code
