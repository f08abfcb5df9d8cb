"""Finding image files and decoding them robustly (in a decode thread or DataLoader workers).

One bad file must never stop a 50,000-image run: decoding returns an error string instead of
raising, and the batch carries it to the output as a one-line message naming the file.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from cam_cli.errors import SetupError
from cam_cli.files.image_names import IMAGE_EXTENSIONS, is_image_file
from cam_cli.files.reading import regular_file

# The one pixel limit of the tool, for every image it opens. Pillow warns above its
# MAX_IMAGE_PIXELS (89,478,485 by default) and refuses above twice that: it is set to our limit
# here, and its warning is a refusal (`open_image`), so both say the same number.
DEFAULT_MAX_PIXELS = 178_956_970
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated JPEG is an error, not a grey half-image


def check_image_size(size: tuple[int, int] | None, argument: str = "`size`") -> None:
    """An image size given as ``(width, height)``: no larger than an image the tool decodes
    (`DEFAULT_MAX_PIXELS`), so boxes scaled to it stay exact integers. ``argument`` names
    where the size comes from, in the library's words."""
    if size is None:
        return
    width, height = size
    if width < 1 or height < 1 or width * height > DEFAULT_MAX_PIXELS:
        raise SetupError(
            f"{argument} {width}x{height}: must be at least 1x1 and at most {DEFAULT_MAX_PIXELS} "
            "pixels (the largest image cam-cli decodes)"
        )


def list_images(
    folder: str | Path,
    extensions: Collection[str] = IMAGE_EXTENSIONS,
    follow: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """Image files under ``folder``, recursively (symlinked folders followed, each folder once),
    sorted as paths. The one image walk of the tool: `bbox`, `cam`, `eval` and training's
    folders all take exactly these files; `boxes` walks the same way for ``extensions`` that
    add ``.npy`` (lower-case suffixes). ``follow(link)``, when given, decides for each
    symlinked folder whether it is walked (training: not into another class)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a directory")
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        info = os.stat(root)
        if (info.st_dev, info.st_ino) in seen:  # a symlink loop, or a folder linked twice
            dirs.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        if follow is not None:
            dirs[:] = [d for d in dirs if not Path(root, d).is_symlink() or follow(Path(root, d))]
        found.extend(Path(root, name) for name in files if is_image_file(name, extensions))
    return sorted(path for path in found if path.is_file())


def find_images(
    sources: Iterable[str], extensions: Collection[str] = IMAGE_EXTENSIONS
) -> Iterator[tuple[Path, str | None]]:
    """Expand image sources into ``(path, problem)``: directories give `list_images`, ``-``
    reads one path per line from stdin, files are taken as given (whatever their extension).

    A source that does not exist is yielded with its problem, so the caller reports and counts it.
    A folder without a single image, or a ``-`` whose stdin holds no path (``find`` found
    nothing), is a `SetupError` (a wrong folder or pipeline, not an empty result).
    """
    for source in sources:
        if source == "-":
            given = False
            for line in sys.stdin:
                line = line.strip()
                if line:
                    given = True
                    yield from find_images([line], extensions)
            if not given:
                raise SetupError("'-' (paths on stdin): stdin gave no paths")
            continue
        path = Path(source)
        if path.is_dir():
            children = list_images(path, extensions)
            if not children:
                name = os.fsencode(str(path)).decode("utf-8", "backslashreplace")
                raise SetupError(f"no images found in {name}")
            for child in children:
                yield child, None
        elif path.exists():
            yield path, None
        else:
            yield path, "no such file or directory"


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: alpha composited on white, 16-bit scaled, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        if image.mode == "F":
            low, top = float(array.min()), float(array.max())
            array = (array - low) / max(top - low, 1e-12) * 255.0
        else:
            array = array / top * 255.0
        image = Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB") if image.mode != "RGB" else image


SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90 degrees


@contextmanager
def open_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """`Image.open`, refusing an image over ``max_pixels`` from its header, before any
    decoding, with one ValueError line (what Pillow's own bomb warning and error say too).
    Every image the tool reads is opened here, so one limit holds everywhere."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            image = Image.open(path)
    except Image.DecompressionBombError as error:  # over twice the limit: only its pixel count
        count = re.search(r"\((\d+) pixels\)", str(error))
        pixels = count[1] if count else "more"
        raise ValueError(f"refused: {pixels} pixels exceeds the limit of {max_pixels} "
                         "(decompression bomb?)") from None  # fmt: skip
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ValueError(
                f"refused: {width}x{height} = {width * height} pixels exceeds the limit of "
                f"{max_pixels} (decompression bomb?)"
            )
        with warnings.catch_warnings():  # some plugins check again while loading
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield image


def open_rgb(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode an image as upright 8-bit RGB, refusing decompression bombs before decoding.

    Returns the image and its full upright ``(width, height)``: with ``draft_size`` a JPEG may be
    decoded at a reduced scale (libjpeg's DCT scaling, never below ``draft_size``), which makes
    decoding large photos cheap, while boxes are still reported in full-size pixels.
    Raises ValueError with a short reason for anything that is not a usable image.
    """
    path = Path(path)
    try:
        info = regular_file(path)
        if info.st_size == 0:
            raise ValueError("empty file (0 bytes)")
        with open_image(path, max_pixels) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in SWAPPING_ORIENTATIONS:
                width, height = height, width
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb(image), (width, height)
    except ValueError:
        raise
    except UnidentifiedImageError:
        raise ValueError("not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"refused: {error}") from None
    except (OSError, SyntaxError, EOFError) as error:
        reason = str(error) or type(error).__name__
        if "truncated" in reason.lower():
            reason = f"truncated or corrupt image ({reason})"
        raise ValueError(reason) from None
    except Exception as error:  # noqa: BLE001 - any decoder bug is one line, never a crash
        raise ValueError(f"{type(error).__name__}: {error}") from None


def load_resized(
    path: str | Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, int, int]:
    """Decode and resize the whole image (no crop) to ``size x size``; returns (pixels, w, h)."""
    image, (width, height) = open_rgb(path, max_pixels, draft_size=size)
    resized = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    pixels = np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)
    return np.ascontiguousarray(pixels), width, height
