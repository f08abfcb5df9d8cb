"""`cam-cli models`: the registry as a table."""

from __future__ import annotations

import typer


def models() -> None:
    """List the networks of the registry: CAM resolution at 224, parameters, ImageNet weights.

    Example: cam-cli models
    """
    from cam_cli.models.registry import describe_archs

    rows = describe_archs()
    header = ("name", "CAM@224", "params", "torchvision weights", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        typer.echo("  ".join([*cells, str(row[4])]))
