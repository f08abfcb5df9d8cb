"""PxAP's masks and maps (`evaluation.pxap`) are opened as every image and every map is: a mask
over the pixel limit refused from its header, before decoding; a damaged mask one line in both
PxAP modes; a score map's header checked before its data."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import invoke
from PIL import Image
from test_scoremaps import png_header

from cam_cli.data.wsol_metadata import read_wsol_metadata
from cam_cli.evaluation.pxap import pxap_from_scoremap_dir, read_grey
from cam_cli.synthetic.dataset import generate_dataset


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    out = tmp_path_factory.mktemp("pxap") / "data"
    generate_dataset(out, num_classes=3, train_per_class=1, val_images=4, seed=0, masks=True)
    return out


def test_a_mask_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    """Issue 25 (9): a 30000 x 30000 header ended in DecompressionBombError; a 15000 x 15000
    mask (225 M pixels, between Pillow's warning and its error) was decoded (1.65 GB)."""
    bomb = png_header(tmp_path / "bomb.png", 30_000, 30_000)
    with pytest.raises(ValueError, match=r"bomb.png: cannot read the mask \(refused: 9000000"):
        read_grey(bomb)
    big = png_header(tmp_path / "big.png", 15_000, 15_000)
    with pytest.raises(ValueError, match="cannot read the mask") as refused:
        read_grey(big)
    assert str(refused.value) == (
        f"{big}: cannot read the mask (refused: 15000x15000 = 225000000 pixels exceeds the "
        "limit of 178956970 (decompression bomb?))"
    )
    Image.new("L", (6, 4), 255).save(tmp_path / "ok.png")
    assert read_grey(tmp_path / "ok.png").shape == (4, 6)


def _damage_first_mask(masks, tmp_path):
    """A copy of the mask root with the first image's first mask damaged (garbage bytes)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(masks, root, symlinks=True)
    metadata = read_wsol_metadata(root / "wsol" / "val")
    damaged = root / metadata.masks[metadata.image_ids[0]][0]
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    return root, damaged


def test_a_damaged_mask_is_one_line_in_a_model_run_as_with_maps(masks, tmp_path):
    """Issue 25 (10): a model run ended in a ValueError traceback; the maps-only mode said it in
    one line."""
    import torch

    from cam_cli.models.registry import build_model

    root, damaged = _damage_first_mask(masks, tmp_path)
    torch.manual_seed(0)
    torch.save(build_model("small-gap", 3).state_dict(), tmp_path / "w.pth")
    result = invoke(
        "eval", "--arch", "small-gap", "--weights", tmp_path / "w.pth", "--classes",
        root / "LOC_synset_mapping.txt", "--wsol-metadata", root / "wsol" / "val",
        "--images", root, "--workers", "0", "--no-fast", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"cam-cli: error: {damaged}: cannot read the mask ({lines[0].split('(', 1)[1]}"
    ]
    maps = tmp_path / "maps"
    metadata = read_wsol_metadata(root / "wsol" / "val")
    for image_id in metadata.image_ids:
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", np.zeros((224, 224)))
    scored = invoke("eval", "--scoremaps", maps, "--wsol-metadata", root / "wsol" / "val",
                    "--mask-root", root)  # fmt: skip
    assert scored.exit_code == 2
    assert f"error: {damaged}: cannot read the mask" in scored.stderr


def test_maps_scored_from_a_folder_are_checked_from_their_header(masks, tmp_path):
    from test_npy import header_only

    metadata = read_wsol_metadata(masks / "wsol" / "val")
    maps = tmp_path / "maps"
    for image_id in metadata.image_ids:
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", np.zeros((224, 224)))
    assert pxap_from_scoremap_dir(masks / "wsol" / "val", maps, masks)["images"] == 4
    huge = maps / f"{metadata.image_ids[1]}.npy"
    header_only(huge, (200_000, 200_000))
    with pytest.raises(ValueError, match=r"\.npy: its header declares shape \[200000, 200000\]"):
        pxap_from_scoremap_dir(masks / "wsol" / "val", maps, masks)
