"""`cam-cli models`: the registry as a table."""

from __future__ import annotations

import sys

import typer


def models(
    timm: str | None = typer.Option(
        None,
        "--timm",
        metavar="PATTERN",
        help="List the CAM-exact timm models matching PATTERN (e.g. '*resnet*'; a bare word "
        "such as 'resnet' means names containing it); use them as "
        '--arch timm/NAME. Needs timm (pip install "cam-cli[timm]").',
        show_default=False,
    ),
    methods: bool = typer.Option(
        False,
        "--methods",
        help="With --timm: every matching model, CAM-exact or not, with the map methods that "
        "run on it (--method) and the layer they read by default (--layer).",
    ),
) -> None:
    """List the networks of the registry: CAM resolution at 224, parameters, ImageNet weights.

    Example: cam-cli models;  cam-cli models --timm '*resnet*'
    """
    if timm is not None:
        _timm_methods(timm) if methods else _timm_models(timm)
        return
    from cam_cli.models.registry import describe_archs

    rows = describe_archs()
    header = ("name", "CAM@224", "params", "torchvision weights", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, str(row[4])]))
    _print(lines)


def _print(lines: list[str]) -> None:
    """The table on stdout; a reader that has gone (``cam-cli models | head -1``) ends the
    command quietly with 0, as `bbox` does (click would exit 1)."""
    from cam_cli.cli.options import reader_gone

    try:
        for line in lines:
            typer.echo(line)
        sys.stdout.flush()
    except BrokenPipeError:
        raise reader_gone() from None


def _timm_models(pattern: str) -> None:
    from cam_cli.cli.options import errors_as_exit
    from cam_cli.models.timm_models import describe_timm

    with errors_as_exit():
        rows = describe_timm(pattern)
    header = ("name", "CAM", "input", "params")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    _print(
        ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
         for row in [header, *rows]]
    )  # fmt: skip
    if not rows:
        typer.echo(f"no CAM-exact timm model matches {pattern!r}", err=True)


def _timm_methods(pattern: str) -> None:
    from cam_cli.cli.options import errors_as_exit
    from cam_cli.inference.map_methods import describe_timm_methods

    with errors_as_exit():
        rows = describe_timm_methods(pattern)
    header = ("name", "methods", "default layer")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(2)]
    _print([f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}"
            for row in [header, *rows]])  # fmt: skip
    if not rows:
        typer.echo(f"no timm model matches {pattern!r}", err=True)
