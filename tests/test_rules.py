"""The box rules, the ten-crop placement and the heatmap files `cam-cli boxes` reads."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from cam_cli.boxes.components import boxes_from_cams, scale_boxes
from cam_cli.boxes.rules import boxes_for_image, check_rule, resize_map, rule_boxes
from cam_cli.boxes.zhou2016 import quantize_heatmap, zhou2016_boxes
from cam_cli.cam.ten_crop import (
    crop_cams,
    crop_offsets,
    frame_size,
    mean_crop_probabilities,
    merge_crops,
    ten_crops,
)
from cam_cli.data.heatmaps import HEATMAP_EXTENSIONS, parse_size, read_maps
from cam_cli.data.images import find_images
from cam_cli.errors import SetupError
from cam_cli.outputs.writers import BoxRecordWriter


def _two_blobs() -> np.ndarray:
    cam = np.zeros((20, 30), dtype=np.float32)
    cam[2:5, 3:6] = 1.0  # 9 pixels
    cam[10:16, 12:20] = 0.8  # 48 pixels: the largest
    return cam


def test_paper_rule_is_boxes_from_cams():
    cam = _two_blobs()
    assert rule_boxes(cam, "paper").tolist() == boxes_from_cams(cam[None]).tolist()
    assert rule_boxes(cam, "paper").tolist() == [[12, 10, 19, 15]]


def test_all_components_ranked_by_size_box_one_is_the_papers():
    boxes = rule_boxes(_two_blobs(), "all-components")
    assert boxes.tolist() == [[12, 10, 19, 15], [3, 2, 5, 4]]
    # a diagonal touch joins (8-connectivity); a degenerate map gets the whole map
    cam = np.zeros((5, 5))
    cam[1, 1] = cam[2, 2] = 1
    assert rule_boxes(cam, "all-components").tolist() == [[1, 1, 2, 2]]
    assert rule_boxes(np.zeros((4, 6)), "all-components").tolist() == [[0, 0, 5, 3]]


def test_zhou2016_rule_quantises_floats_and_takes_uint8_as_is():
    cam = np.zeros((60, 80), dtype=np.float32)
    cam[10:50, 20:70] = 0.5
    cam[20:40, 30:60] = 2.0
    expected = zhou2016_boxes(quantize_heatmap(cam))
    assert rule_boxes(cam, "zhou2016").tolist() == expected.tolist()
    assert rule_boxes(quantize_heatmap(cam), "zhou2016").tolist() == expected.tolist()
    # nothing the released program keeps: the whole map, as the paper rule does
    assert rule_boxes(np.zeros((8, 9)), "zhou2016").tolist() == [[0, 0, 8, 7]]


def test_unknown_rule_and_bad_shape():
    with pytest.raises(ValueError, match="box rule must be one of"):
        check_rule("largest")
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        rule_boxes(np.zeros((2, 3, 4)), "paper")


def test_boxes_for_image_scales_or_boxes_at_the_image_size():
    cam = _two_blobs()
    scaled = boxes_for_image(cam, (60, 40), "paper")
    assert scaled.tolist() == scale_boxes(rule_boxes(cam), (30, 20), [[60, 40]]).tolist()
    resized = boxes_for_image(cam, (60, 40), "zhou2016", at_image_size=True)
    assert resized.tolist() == rule_boxes(resize_map(cam, (60, 40)), "zhou2016").tolist()
    assert resize_map(cam, (30, 20)) is cam  # already the size: untouched


# --- ten-crop ---------------------------------------------------------------------------------


def test_crop_places_for_224():
    assert frame_size(224) == 256
    assert crop_offsets(256, 224) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]


def test_ten_crops_cut_the_five_places_and_their_mirrors():
    frame = torch.arange(256 * 256, dtype=torch.float32).view(1, 1, 256, 256).expand(2, 3, -1, -1)
    crops = ten_crops(frame, 224).view(2, 10, 3, 224, 224)
    for t, (y, x) in enumerate(crop_offsets(256, 224)):
        assert torch.equal(crops[:, t], frame[..., y : y + 224, x : x + 224])
        assert torch.equal(crops[:, t + 5], crops[:, t].flip(-1))


def test_merge_puts_each_crop_at_its_place():
    """Crop t's map is the constant t + 1: each frame pixel is the sum over the crops that
    cover it, which tells which crop went where."""
    maps = torch.arange(1, 11, dtype=torch.float32).view(1, 10, 1, 1, 1).expand(1, 10, 1, 224, 224)
    merged = merge_crops(maps, 256)[0, 0]
    assert merged[0, 0] == 1 + 6  # top-left and its mirror only
    assert merged[0, 255] == 2 + 7  # top-right
    assert merged[255, 0] == 3 + 8  # bottom-left
    assert merged[255, 255] == 4 + 9  # bottom-right
    assert merged[128, 128] == sum(range(1, 11))  # all ten
    assert merged[16, 16] == 1 + 6 + 5 + 10
    assert merged[15, 16] == 1 + 6
    assert merged[0, 100] == 1 + 6 + 2 + 7  # both top crops


def test_merge_flips_mirrored_maps_back_and_sums_absolute_values():
    maps = torch.zeros(1, 10, 1, 224, 224)
    maps[0, 5, 0, 0, 0] = -1.0  # left column of the mirrored top-left crop...
    maps[0, 6, 0, 0, 0] = 2.0  # ... and of the mirrored top-right one
    maps[0, 0, 0, 0, 0] = -3.0  # the plain top-left crop is not flipped
    merged = merge_crops(maps, 256)[0, 0]
    assert merged[0, 223] == 1.0  # flipped back to the crop's right edge, absolute value
    assert merged[0, 255] == 2.0
    assert merged[0, 0] == 3.0
    assert merged.sum() == 6.0


def test_crop_cams_is_one_einsum_per_crop_and_mean_scores():
    features = torch.randn(20, 4, 3, 3)  # 2 images x 10 crops
    weight = torch.randn(7, 4)
    indices = torch.tensor([[1, 5], [0, 6]])
    cams = crop_cams(features, weight, indices)
    assert cams.shape == (2, 10, 2, 3, 3)
    assert torch.allclose(cams[1, 3, 0], torch.einsum("k,khw->hw", weight[0], features[13]))
    assert torch.allclose(cams[0, 3, 1], torch.einsum("k,khw->hw", weight[5], features[3]))
    logits = torch.randn(20, 7)
    mean = mean_crop_probabilities(logits)
    assert torch.allclose(mean[1], logits[10:].softmax(1).mean(0))


# --- heatmap files ------------------------------------------------------------------------------


def test_read_maps_npy_shapes_and_bad_files(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((4, 5), dtype=np.float32))
    np.save(tmp_path / "stack.npy", np.ones((3, 4, 5)))
    np.save(tmp_path / "ints.npy", np.arange(20, dtype=np.int16).reshape(4, 5))
    maps, stacked = read_maps(tmp_path / "one.npy")
    assert maps.shape == (1, 4, 5)
    assert not stacked
    maps, stacked = read_maps(tmp_path / "stack.npy")
    assert maps.shape == (3, 4, 5)
    assert stacked
    assert read_maps(tmp_path / "ints.npy")[0].dtype == np.float64
    bad = {
        "vector.npy": (np.ones(5), "got shape"),
        "nan.npy": (np.full((3, 3), np.nan), "NaN"),
        "empty.npy": (np.ones((0, 3)), "empty map"),
        "text.npy": (np.array([["a"]]), "not a numeric map"),
        "objects.npy": (np.array([[{}]], dtype=object), r"\.npy array \(it holds Python obj"),
    }
    for name, (array, reason) in bad.items():
        np.save(tmp_path / name, array, allow_pickle=True)
        with pytest.raises(ValueError, match=reason):
            read_maps(tmp_path / name)
    (tmp_path / "junk.npy").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"^not a \.npy map file \(no NumPy header\)$"):
        read_maps(tmp_path / "junk.npy")
    (tmp_path / "junk.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a readable grey image"):
        read_maps(tmp_path / "junk.png")


def test_discovery_takes_npy_only_when_asked(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((2, 2)))
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(SetupError, match="no images found"):  # bbox, cam, eval: none here
        list(find_images([str(tmp_path)]))
    assert [p.name for p, _ in find_images([str(tmp_path)], HEATMAP_EXTENSIONS)] == ["a.npy"]


def test_parse_size():
    assert parse_size("500x375") == (500, 375)
    for text in ("500", "0x3", "ax4", "5x-1"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_size(text)


def test_box_writer_jsonl_and_csv():
    records = [
        {"path": "a.npy", "width": 5, "height": 4, "boxes": [[0, 0, 4, 3], [1, 1, 2, 2]]},
        {"path": "s.npy", "map": 1, "width": 5, "height": 4, "boxes": [[0, 0, 1, 1]]},
        {"path": "bad.npy", "error": "empty map"},
    ]
    text = io.StringIO()
    writer = BoxRecordWriter(text, "jsonl")
    for record in records:
        writer.write(record)
    assert [json.loads(line) for line in text.getvalue().splitlines()] == records
    text = io.StringIO()
    writer = BoxRecordWriter(text, "csv")
    for record in records:
        writer.write(record)
    assert text.getvalue().splitlines() == [
        "path,map,width,height,rank,xmin,ymin,xmax,ymax,error",
        "a.npy,,5,4,1,0,0,4,3,",
        "a.npy,,5,4,2,1,1,2,2,",
        "s.npy,1,5,4,1,0,0,1,1,",
        "bad.npy,,,,,,,,,empty map",
    ]


def test_parse_size_refuses_sizes_beyond_the_pixel_limit():
    # 178,956,970 pixels is the image limit (data.images): 13377 x 13378 = 178,957,506 is over
    assert parse_size("13000x13000") == (13000, 13000)
    for text in ("99999999999999999999x2", "13377x13378", "60000x60000"):
        with pytest.raises(ValueError, match="exceeds the limit of 178956970"):
            parse_size(text)


def test_read_maps_refuses_an_image_shaped_array_and_files_that_are_not_npy(tmp_path):
    np.save(tmp_path / "hwc.npy", np.random.default_rng(0).random((224, 224, 3)))
    with pytest.raises(ValueError, match=r"shape \[224, 224, 3\] looks like an image"):
        read_maps(tmp_path / "hwc.npy")
    np.save(tmp_path / "rgba.npy", np.ones((9, 6, 4)))
    with pytest.raises(ValueError, match="looks like an image"):
        read_maps(tmp_path / "rgba.npy")
    np.save(tmp_path / "chw.npy", np.ones((3, 224, 224)))  # channels first: three maps
    assert read_maps(tmp_path / "chw.npy")[0].shape == (3, 224, 224)
    np.save(tmp_path / "small.npy", np.ones((2, 7, 3)))  # 3 is not below 2: a stack of 2
    assert read_maps(tmp_path / "small.npy")[0].shape == (2, 7, 3)
    (tmp_path / "zero.npy").symlink_to("/dev/zero")  # never opened: no numpy pickle advice
    with pytest.raises(ValueError, match=r"^not a regular file \(a character device\)$"):
        read_maps(tmp_path / "zero.npy")
    (tmp_path / "jpeg.npy").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))  # a renamed JPEG
    with pytest.raises(ValueError, match=r"^not a \.npy map file \(no NumPy header\)$"):
        read_maps(tmp_path / "jpeg.npy")


def test_resize_map_scales_maps_beyond_float32_instead_of_overflowing(recwarn):
    cam = np.zeros((7, 7))
    cam[3, 3], cam[0, 0] = 1e308, -1e308
    resized = resize_map(cam, (14, 14))
    assert np.isfinite(resized).all()
    assert resized.max() == pytest.approx(resized[6:8, 6:8].max())
    assert (
        rule_boxes(resized, "zhou2016")[0].tolist()
        == rule_boxes(resize_map(cam / 1e308, (14, 14)), "zhou2016")[0].tolist()
    )
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_boxing_at_the_image_size_is_bounded_for_huge_images(monkeypatch):
    from cam_cli.boxes import rules

    assert rules.MAX_BOX_PIXELS == 2048 * 2048
    assert rules.box_grid((500, 375)) == (500, 375)  # every usual photo: as before
    assert rules.box_grid((2048, 2048)) == (2048, 2048)
    assert rules.box_grid((9000, 9000)) == (2048, 2048)
    assert rules.box_grid((9000, 3000)) == (3547, 1182)  # aspect kept, 4,192,554 pixels
    monkeypatch.setattr(rules, "MAX_BOX_PIXELS", 200 * 200)  # the same rule, cheaply
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[2:4, 1:3] = 1.0
    asked = []
    resize = rules.resize_map
    monkeypatch.setattr(rules, "resize_map", lambda m, s: asked.append(s) or resize(m, s))
    for rule in ("zhou2016", "paper"):
        boxes = boxes_for_image(cam, (900, 900), rule, at_image_size=True)
        grid = rule_boxes(resize(cam, (200, 200)), rule)
        assert (
            boxes.tolist()
            == scale_boxes(grid, (200, 200), np.tile((900, 900), (len(grid), 1))).tolist()
        )
    assert asked == [(200, 200), (200, 200)]  # never a 900 x 900 map
    assert boxes_for_image(cam, (150, 100), "zhou2016", at_image_size=True).tolist() == (
        rule_boxes(resize(cam, (150, 100)), "zhou2016").tolist()
    )
