"""Which files are images: by the extension of their name, one list for every command (the
image discovery of `data.images` and the checks that keep an output out of an input folder)."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

IMAGE_EXTENSIONS = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}


def is_image_file(
    path: str | os.PathLike[str], extensions: Collection[str] = IMAGE_EXTENSIONS
) -> bool:
    return Path(path).suffix.lower() in extensions
