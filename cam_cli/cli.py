"""The command line: parses options, calls the library, prints. Nothing else lives here.

torch and friends are imported inside the commands, so `cam-cli --help` answers at once.
Exit codes: 0 all good, 1 some inputs failed (each named on stderr), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

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

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"cam-cli: error: {message}", err=True)
    return typer.Exit(code)


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
    str | None,
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
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
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
ClassQuery = Annotated[
    list[str] | None,
    typer.Option(
        "--class",
        help="Use this class (index, wnid or name) for every image instead of the top-k. "
        "Repeatable.",
        show_default=False,
    ),
]


def load_from_options(arch, weights, checkpoint, classes, normalize, input_size, device):
    from cam_cli.loading import ModelLoadError, load_model
    from cam_cli.pipeline import resolve_device

    try:
        torch_device = resolve_device(device)
        return load_model(
            arch=arch,
            weights=weights,
            checkpoint=checkpoint,
            classes_file=classes,
            normalize=normalize,
            input_size=input_size,
            device=str(torch_device),
        )
    except (ModelLoadError, ValueError, OSError) as error:
        raise fail(str(error)) from None


def _collect_images(images: list[str] | None, extra: list[str] | None) -> tuple[list[str], list]:
    from cam_cli.images import find_images

    sources = [*(images or []), *(extra or [])]
    if not sources:
        raise fail("no images given: use --images DIR|FILE|- (see --help)")
    paths, missing = [], []
    for path, problem in find_images(sources):
        (missing.append((str(path), problem)) if problem else paths.append(str(path)))
    return paths, missing


def note(message: str) -> None:
    """A line for people, on stderr."""
    typer.echo(f"cam-cli: {message}", err=True)


def _render_boxes(result) -> None:
    """`bbox --draw`: the picture is drawn and encoded beside the network (`localize` finish);
    an error is kept for the main loop to report."""
    from cam_cli.draw import boxes_png

    try:
        result.analysis = boxes_png(result.path, [p.as_dict() for p in result.predictions])
    except (ValueError, OSError) as error:
        result.analysis = error


def _report_failure(path: str, reason: str) -> None:
    typer.echo(f"cam-cli: {path}: {reason}", err=True)


def _resolve_classes(queries: list[str] | None, loaded) -> list[int] | None:
    if not queries:
        return None
    from cam_cli.classes import resolve_class

    try:
        return [resolve_class(q, loaded.classes) for q in queries]
    except ValueError as error:
        raise fail(str(error)) from None


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@app.command()
def models() -> None:
    """List the networks of the registry: CAM resolution at 224, parameters, ImageNet weights.

    Example: cam-cli models
    """
    from cam_cli.registry import describe_archs

    rows = describe_archs()
    header = ("name", "CAM@224", "params", "torchvision weights", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        typer.echo("  ".join([*cells, str(row[4])]))


@app.command()
def bbox(
    images: Images = None,
    extra_images: ExtraImages = None,
    arch: Arch = None,
    weights: Weights = None,
    checkpoint: Checkpoint = None,
    classes: ClassesFile = None,
    normalize: Normalize = None,
    input_size: InputSize = None,
    topk: TopK = 5,
    threshold: Threshold = 0.2,
    class_query: ClassQuery = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    device: Device = "auto",
    fast: Fast = None,
    compile_model: Compile = False,
    output_format: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default stdout).")
    ] = None,
    draw: Annotated[
        Path | None, typer.Option(help="Also write each image with its boxes as PNG here.")
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Boxes for the top-k classes of every image, as JSON Lines (one object per image).

    Each object: path, width, height and predictions [{rank, class_index, wnid, name, score,
    box: [xmin, ymin, xmax, ymax]}], boxes in the image's own pixels (inclusive). An image that
    cannot be read gives {path, error}, a line on stderr, and exit code 1 at the end.

    Examples:

      cam-cli bbox --arch mobilenet_v2 --weights mobilenet_v2-imagenet.pth
      --classes LOC_synset_mapping.txt --images val/ --topk 5 > boxes.jsonl

      find photos -name '*.jpg' | cam-cli bbox --checkpoint runs/x/best.pt --images - --format csv
    """
    if output_format not in ("jsonl", "csv"):
        raise fail(f"--format must be jsonl or csv, not {output_format!r}")
    paths, missing = _collect_images(images, extra_images)
    loaded = load_from_options(arch, weights, checkpoint, classes, normalize, input_size, device)
    fixed = _resolve_classes(class_query, loaded)

    from cam_cli.draw import output_stem, save_bytes_atomic
    from cam_cli.output import RecordWriter, open_output
    from cam_cli.pipeline import ImageResult, Localizer, compile_with_notes

    localizer = Localizer(
        loaded, topk=topk, threshold=threshold, class_indices=fixed, device=device, fast=fast
    )
    if compile_model and paths:
        compile_with_notes(localizer, batch_size, None if quiet else note, note)
    if draw is not None:
        draw.mkdir(parents=True, exist_ok=True)
    failures = 0
    taken: set[str] = set()
    with open_output(output) as handle:
        writer = RecordWriter(handle, output_format)
        for path, problem in missing:
            writer.write(ImageResult(path, error=problem).as_record())
        results = localizer.localize(
            paths,
            batch_size=batch_size,
            workers=workers,
            progress=show_progress(quiet),
            finish=None if draw is None else _render_boxes,
        )
        for result in results:
            record = result.as_record()
            writer.write(record)
            if result.error is not None:
                failures += 1
                _report_failure(result.path, result.error)
            elif draw is not None:
                if isinstance(result.analysis, Exception):
                    failures += 1
                    _report_failure(result.path, f"--draw: {result.analysis}")
                    continue
                target = draw / f"{output_stem(result.path, taken)}_boxes.png"
                try:
                    save_bytes_atomic(result.analysis, target)
                except OSError as error:
                    failures += 1
                    _report_failure(result.path, f"--draw: {error}")
    for path, problem in missing:
        _report_failure(path, problem)
    failures += len(missing)
    if failures:
        typer.echo(f"cam-cli: {failures} of {len(paths) + len(missing)} images failed", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def cam(
    out: Annotated[Path, typer.Option("--out", help="Folder for the overlays and maps.")],
    images: Images = None,
    extra_images: ExtraImages = None,
    arch: Arch = None,
    weights: Weights = None,
    checkpoint: Checkpoint = None,
    classes: ClassesFile = None,
    normalize: Normalize = None,
    input_size: InputSize = None,
    topk: TopK = 1,
    class_query: ClassQuery = None,
    npy: Annotated[
        str,
        typer.Option(help="Also save raw maps: none, feature (h x w), image (H x W) or both."),
    ] = "none",
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Heat-map opacity.")] = 0.5,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    device: Device = "auto",
    fast: Fast = None,
    compile_model: Compile = False,
    quiet: Quiet = False,
) -> None:
    """Write each image's class activation maps as colour overlays (PNG), optionally raw (.npy).

    Files are named IMAGE_rankR_CLASS.png (and .feature.npy / .image.npy); inputs are never
    overwritten.

    Examples:

      cam-cli cam --arch mobilenet_v2 --weights mobilenet_v2-imagenet.pth
      --classes LOC_synset_mapping.txt --images dog.jpg --topk 3 --out cams/

      cam-cli cam --checkpoint best.pt --images val/ --class n01440764 --npy both --out cams/
    """
    if npy not in ("none", "feature", "image", "both"):
        raise fail(f"--npy must be none, feature, image or both, not {npy!r}")
    paths, missing = _collect_images(images, extra_images)
    loaded = load_from_options(arch, weights, checkpoint, classes, normalize, input_size, device)
    fixed = _resolve_classes(class_query, loaded)

    from cam_cli.cam_files import CamWriter
    from cam_cli.pipeline import Localizer, compile_with_notes

    try:
        writer = CamWriter(out, paths, npy=npy, alpha=alpha)
    except ValueError as error:
        raise fail(str(error)) from None
    localizer = Localizer(loaded, topk=topk, class_indices=fixed, device=device, fast=fast)
    if compile_model and paths:
        compile_with_notes(localizer, batch_size, None if quiet else note, note)
    failures = len(missing)
    for path, problem in missing:
        _report_failure(path, problem)
    results = localizer.localize(
        paths,
        batch_size=batch_size,
        workers=workers,
        keep_cams=True,
        progress=show_progress(quiet),
        finish=writer.render,
    )
    for result in results:
        if result.error is not None:
            failures += 1
            _report_failure(result.path, result.error)
            continue
        try:
            writer.write(result)
        except (ValueError, OSError) as error:
            failures += 1
            _report_failure(result.path, str(error))
    if failures:
        typer.echo(f"cam-cli: {failures} of {len(paths) + len(missing)} images failed", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (ILSVRC layout).")],
    num_classes: Annotated[int, typer.Option(min=2, max=64, help="Classes.")] = 6,
    train_per_class: Annotated[int, typer.Option(min=1, help="Training images per class.")] = 200,
    val_images: Annotated[int, typer.Option(min=1, help="Validation images (with boxes).")] = 300,
    image_size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Same seed, byte-identical dataset.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset this command made.")] = False,
) -> None:
    """Generate a synthetic localization benchmark in exactly the ILSVRC layout and formats.

    train/<wnid>/*.JPEG, flat val/*.JPEG, annotations/*.xml, LOC_val_solution.csv and
    LOC_synset_mapping.txt: objects whose shape, texture and colour make the class, at random
    positions and scales (5-50% of the image) on cluttered backgrounds with distractors.

    Example: cam-cli synth data/synth && cam-cli train --arch small-gap --data data/synth ...
    """
    from cam_cli.synthetic import generate_dataset

    try:
        summary = generate_dataset(
            out_dir,
            num_classes=num_classes,
            train_per_class=train_per_class,
            val_images=val_images,
            image_size=image_size,
            seed=seed,
            overwrite=overwrite,
        )
    except (ValueError, FileExistsError, OSError) as error:
        raise fail(str(error)) from None
    typer.echo(
        f"cam-cli: wrote {summary.train_images} training and {summary.val_images} validation "
        f"images of {summary.num_classes} classes to {out_dir} in {summary.seconds:.1f}s",
        err=True,
    )


# Commands with more machinery live in modules of their own, each registering on `app`.
from cam_cli import cli_eval, cli_train  # noqa: E402, F401


def main() -> None:
    """Console entry point: click's usage errors exit 2, our own errors say what to do."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("cam-cli: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `cam-cli bbox ... | head` closes the pipe early; not an error
        sys.stderr.close()
        sys.exit(0)
