"""Localization metrics pinned by hand-computed values (inclusive-pixel IoU throughout)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cam_cli.boxes.geometry import centered_box, iou_inclusive, pairwise_iou_inclusive
from cam_cli.data.annotations import ImageAnnotation
from cam_cli.evaluation.localization import LocalizationEvaluator, prediction_matches
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
from cam_cli.evaluation.table import format_table

SNAKE, TENCH, FOX = "n01751748", "n01440764", "n02119789"
CLASS_INDEX = {TENCH: 0, SNAKE: 65, FOX: 277}


def pred(rank: int, wnid: str | None, box, class_index: int | None = None) -> dict:
    index = CLASS_INDEX.get(wnid, 999) if class_index is None else class_index
    return {
        "rank": rank,
        "class_index": index,
        "wnid": wnid,
        "name": None,
        "score": 0.1,
        "box": list(box),
    }


def record(*predictions, width=100, height=100, path="img.JPEG") -> dict:
    return {"path": path, "width": width, "height": height, "predictions": list(predictions)}


def annotation(*boxes, labels=None, width=100, height=100, image_id="img") -> ImageAnnotation:
    labels = labels or tuple(dict.fromkeys(label for label, _ in boxes))
    return ImageAnnotation(image_id, tuple(labels), tuple(boxes), width, height)


GT = (0, 0, 99, 99)  # area (99 - 0 + 1) * (99 - 0 + 1) = 10000


# --- IoU --------------------------------------------------------------------------------------


def test_iou_exactly_half_just_under_and_just_over():
    # [0, 0, 99, 49]: 100 x 50 = 5000 pixels, all inside GT: 5000 / 10000 = 0.5 exactly.
    # (Exclusive arithmetic would give 99 * 49 / (99 * 99) = 0.4949..., a miss.)
    # [0, 0, 99, 48]: 100 x 49 = 4900 -> 0.49.   [0, 0, 99, 50]: 100 x 51 = 5100 -> 0.51.
    ious = iou_inclusive(GT, [[0, 0, 99, 49], [0, 0, 99, 48], [0, 0, 99, 50]])
    np.testing.assert_allclose(ious, [0.5, 0.49, 0.51])


def test_iou_edge_cases():
    assert iou_inclusive([3, 3, 3, 3], [[3, 3, 3, 3]])[0] == 1.0  # one-pixel box has area 1
    # [0,0,4,4] and [5,0,9,4] touch but share no pixel: width min(4, 9) - max(0, 5) + 1 = 0.
    assert iou_inclusive([0, 0, 4, 4], [[5, 0, 9, 4]])[0] == 0.0
    # Sharing column 4: intersection 1 x 5 = 5, union 25 + 25 - 5 = 45.
    assert iou_inclusive([0, 0, 4, 4], [[4, 0, 8, 4]])[0] == pytest.approx(5 / 45)
    assert iou_inclusive([0, 0, 4, 4], np.zeros((0, 4))).shape == (0,)
    assert pairwise_iou_inclusive([[0, 0, 4, 4], [5, 0, 9, 4]], [[0, 0, 9, 4]]).tolist() == [
        [0.5],
        [0.5],
    ]


# --- ILSVRC rule ------------------------------------------------------------------------------


def test_iou_just_over_and_just_under_half_decide_correctness():
    evaluator = LocalizationEvaluator()
    over = evaluator.add(record(pred(1, SNAKE, (0, 0, 99, 50))), annotation((SNAKE, GT)))
    under = evaluator.add(record(pred(1, SNAKE, (0, 0, 99, 48))), annotation((SNAKE, GT)))
    exact = evaluator.add(record(pred(1, SNAKE, (0, 0, 99, 49))), annotation((SNAKE, GT)))
    assert over["top1_loc_correct"]
    assert exact["top1_loc_correct"]
    assert not under["top1_loc_correct"]
    assert under["top1_cls_correct"]
    assert under["predictions"][0]["iou"] == pytest.approx(0.49)
    summary = evaluator.summary()
    assert summary["correct"]["top1_loc"] == 2
    assert summary["top1_loc_error"] == pytest.approx(100 / 3)


def test_right_box_wrong_class_is_wrong():
    result = LocalizationEvaluator().add(record(pred(1, TENCH, GT)), annotation((SNAKE, GT)))
    assert result["predictions"][0]["iou"] == 1.0
    assert not result["predictions"][0]["class_correct"]
    assert not result["top1_loc_correct"]
    assert not result["top5_loc_correct"]


def test_second_ground_truth_box_matches():
    gt = annotation((SNAKE, (0, 0, 9, 9)), (SNAKE, (50, 50, 89, 89)))
    result = LocalizationEvaluator().add(record(pred(1, SNAKE, (50, 50, 89, 89))), gt)
    assert result["top1_loc_correct"]
    assert result["predictions"][0]["iou"] == 1.0
    assert [b["box"] for b in result["gt_boxes"]] == [[0, 0, 9, 9], [50, 50, 89, 89]]


def test_box_must_overlap_a_box_of_the_predicted_class():
    # Two classes in the image: the snake prediction sits exactly on the *fox* box.
    gt = annotation((SNAKE, (0, 0, 9, 9)), (FOX, (50, 50, 89, 89)))
    result = LocalizationEvaluator().add(record(pred(1, SNAKE, (50, 50, 89, 89))), gt)
    assert result["top1_cls_correct"]
    assert not result["top1_loc_correct"]


def test_top5_hit_at_rank_4():
    predictions = [
        pred(1, TENCH, GT),
        pred(2, FOX, GT),
        pred(3, None, GT, class_index=7),
        pred(4, SNAKE, (0, 0, 99, 60)),  # 100 x 61 = 6100 / 10000 = 0.61
        pred(5, "n09999999", GT),
    ]
    evaluator = LocalizationEvaluator()
    # Given out of order: the evaluator sorts by rank.
    result = evaluator.add(record(*reversed(predictions)), annotation((SNAKE, GT)))
    assert [p["rank"] for p in result["predictions"]] == [1, 2, 3, 4, 5]
    assert not result["top1_cls_correct"]
    assert result["top5_cls_correct"]
    assert not result["top1_loc_correct"]
    assert result["top5_loc_correct"]
    assert [p["loc_correct"] for p in result["predictions"]] == [False, False, False, True, False]
    summary = evaluator.summary()
    assert (summary["top1_cls_error"], summary["top5_cls_error"]) == (100.0, 0.0)
    assert (summary["top1_loc_error"], summary["top5_loc_error"]) == (100.0, 0.0)
    assert summary["min_predictions"] == 5


def test_only_the_first_five_predictions_count():
    predictions = [pred(rank, TENCH, GT) for rank in range(1, 6)] + [pred(6, SNAKE, GT)]
    result = LocalizationEvaluator().add(record(*predictions), annotation((SNAKE, GT)))
    assert not result["top5_cls_correct"]
    assert len(result["predictions"]) == 5


def test_failed_image_counts_as_wrong_and_is_listed():
    evaluator = LocalizationEvaluator()
    evaluator.add(record(pred(1, SNAKE, GT)), annotation((SNAKE, GT)))
    failed = evaluator.add(
        {"path": "broken.JPEG", "error": "cannot decode"}, annotation((SNAKE, GT))
    )
    assert failed["error"] == "cannot decode"
    assert failed["predictions"] == []
    assert not any(failed[f"{k}_correct"] for k in ("top1_cls", "top5_cls", "top1_loc", "top5_loc"))
    summary = evaluator.summary()
    assert summary["images"] == 2
    assert summary["failed_images"] == 1
    assert summary["failed"] == [{"path": "broken.JPEG", "error": "cannot decode"}]
    for key in ("top1_cls_error", "top5_cls_error", "top1_loc_error", "top5_loc_error"):
        assert summary[key] == 50.0
    # A record without error but with no predictions is a failure too.
    evaluator.add(
        {"path": "empty.JPEG", "width": 100, "height": 100, "predictions": []},
        annotation((SNAKE, GT)),
    )
    assert evaluator.summary()["failed"][-1] == {"path": "empty.JPEG", "error": "no predictions"}


def test_cub_labels_match_by_class_index():
    gt = annotation(("3", (0, 0, 99, 99)))
    good = LocalizationEvaluator().add(record(pred(1, None, GT, class_index=3)), gt)
    bad = LocalizationEvaluator().add(record(pred(1, None, GT, class_index=4)), gt)
    assert good["top1_loc_correct"]
    assert not bad["top1_cls_correct"]
    assert prediction_matches({"class_index": 65, "wnid": SNAKE}, SNAKE)
    assert not prediction_matches({"class_index": 65, "wnid": None}, SNAKE)


def test_ground_truth_rescaled_to_the_evaluated_image_size():
    # Annotated at 200x200, evaluated at 100x100: [0, 0, 99, 99] covers the top-left quarter,
    # which is [0, 0, 49, 49] at 100x100.
    gt = annotation((SNAKE, (0, 0, 99, 99)), width=200, height=200)
    evaluator = LocalizationEvaluator()
    result = evaluator.add(record(pred(1, SNAKE, (0, 0, 49, 49))), gt)
    assert result["gt_boxes"][0]["box"] == [0, 0, 49, 49]
    assert result["top1_loc_correct"]
    assert evaluator.summary()["images_gt_rescaled"] == 1


def test_gt_known():
    evaluator = LocalizationEvaluator()
    hit = evaluator.add(record(pred(1, TENCH, GT)), annotation((SNAKE, GT)), gt_known_box=GT)
    miss = evaluator.add(
        record(pred(1, SNAKE, GT)), annotation((SNAKE, GT)), gt_known_box=(0, 0, 99, 48)
    )
    assert hit["gt_known_correct"]
    assert not hit["top1_loc_correct"]
    assert miss["gt_known_iou"] == pytest.approx(0.49)
    assert not miss["gt_known_correct"]
    summary = evaluator.summary()
    assert (summary["gt_known_images"], summary["gt_known_correct"]) == (2, 1)
    assert summary["gt_known_loc_error"] == 50.0

    without = LocalizationEvaluator()
    without.add(record(pred(1, SNAKE, GT)), annotation((SNAKE, GT)))
    assert without.summary()["gt_known_loc_error"] is None


def test_labels_only_ground_truth_gives_classification_only():
    evaluator = LocalizationEvaluator()
    evaluator.add(record(pred(1, SNAKE, GT)), annotation(labels=(SNAKE,)))
    summary = evaluator.summary()
    assert summary["top1_cls_error"] == 0.0
    assert summary["top1_loc_error"] is None
    assert summary["images_without_boxes"] == 1
    assert summary["baselines"]["whole_image"]["top1_loc_error"] is None


# --- baselines --------------------------------------------------------------------------------


def test_centered_box_by_hand():
    # 60% of 100 = 60 pixels, margins (100 - 60) // 2 = 20: pixels 20..79.
    assert centered_box(100, 100, 0.6, 0.6).tolist() == [20, 20, 79, 79]
    # 120 of 200 wide (x 40..159), 60 of 100 high (y 20..79).
    assert centered_box(200, 100, 0.6, 0.6).tolist() == [40, 20, 159, 79]
    # Odd leftover: 3 of 10 -> margin 7 // 2 = 3 on the left, 4 on the right.
    assert centered_box(10, 10, 0.3, 1.0).tolist() == [3, 0, 5, 9]
    assert centered_box(10, 10, 0.0, 2.0).tolist() == [4, 0, 4, 9]  # clamped to 1..size


def test_baselines_by_hand():
    evaluator = LocalizationEvaluator()
    # A: 100x100, gt 50x50 at [25, 25, 74, 74] (relative 0.5 x 0.5); top-1 class right.
    evaluator.add(record(pred(1, SNAKE, GT)), annotation((SNAKE, (25, 25, 74, 74))))
    # B: 100x100, gt [0, 0, 89, 89] (0.9 x 0.9); top-1 wrong, rank 2 right.
    evaluator.add(
        record(pred(1, TENCH, GT), pred(2, SNAKE, GT)), annotation((SNAKE, (0, 0, 89, 89)))
    )
    # C: 200x100, gt [0, 0, 119, 59] (120/200 = 0.6 x 60/100 = 0.6); top-1 right.
    evaluator.add(
        record(pred(1, SNAKE, GT), width=200),
        annotation((SNAKE, (0, 0, 119, 59)), width=200),
    )
    # D: failed (no size known): wrong for every baseline, no part in the median.
    evaluator.add({"path": "d.JPEG", "error": "boom"}, annotation((SNAKE, GT), width=None))

    # Median relative size of the boxes of A, B, C: median(0.5, 0.9, 0.6) = 0.6 both ways.
    # Centred 0.6 box: A [20,20,79,79] vs [25,25,74,74]: 2500 / 3600 = 0.69 -> hit (top-1).
    #                  B [20,20,79,79] vs [0,0,89,89]: 3600 / 8100 = 0.44 -> miss.
    #                  C [40,20,159,79] vs [0,0,119,59]: 80*40 = 3200 / (7200+7200-3200) = 0.29.
    # Whole image:     A 2500 / 10000 = 0.25 miss; B 8100 / 10000 = 0.81 hit, but only at
    #                  rank 2 (top-5); C 7200 / 20000 = 0.36 miss.
    baselines = evaluator.summary()["baselines"]
    whole, median = baselines["whole_image"], baselines["centered_median_box"]
    assert median["relative_size"] == pytest.approx([0.6, 0.6])
    assert (whole["top1_loc_correct"], whole["top5_loc_correct"]) == (0, 1)
    assert (median["top1_loc_correct"], median["top5_loc_correct"]) == (1, 1)
    assert (whole["top1_loc_error"], whole["top5_loc_error"]) == (100.0, 75.0)
    assert (median["top1_loc_error"], median["top5_loc_error"]) == (75.0, 75.0)


def test_baseline_needs_the_right_class():
    # Whole-image box would fit (IoU 1), but the predicted class is wrong.
    evaluator = LocalizationEvaluator()
    evaluator.add(record(pred(1, TENCH, (0, 0, 5, 5))), annotation((SNAKE, GT)))
    whole = evaluator.summary()["baselines"]["whole_image"]
    assert (whole["top1_loc_correct"], whole["top5_loc_correct"]) == (0, 0)


# --- MaxBoxAccV2 ------------------------------------------------------------------------------
# The cam-cli protocol (tight boxes of components) first; wsolevaluation's rules after.

# Two blobs: a strong 2x2 blob (value 9) at rows/cols 1..2, a weak one (4) at rows/cols 4..5.
# Normalised: 9 -> 1.0 -> 8-bit 255; 4 -> 4/9 -> int(113.3) = 113; 0 -> 0.
# Threshold 0.0 keeps q > 0: both blobs, boxes [1,1,2,2] and [4,4,5,5].
# Threshold 0.5 keeps q > int(127.5) = 127: the strong blob only, box [1,1,2,2].
TWO_BLOBS = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [0, 9, 9, 0, 0, 0],
        [0, 9, 9, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 4, 4],
        [0, 0, 0, 0, 4, 4],
    ],
    dtype=np.float32,
)


def test_maxboxacc_v2_on_a_hand_made_map():
    metric = MaxBoxAccV2(thresholds=[0.0, 0.5], protocol="cam-cli")
    # 1: gt on the weak blob: IoU 1 at threshold 0, 0 at threshold 0.5.
    np.testing.assert_allclose(metric.add(TWO_BLOBS, [[4, 4, 5, 5]]), [1.0, 0.0])
    # 2: gt on the strong blob: IoU 1 at both.
    np.testing.assert_allclose(metric.add(TWO_BLOBS, [[1, 1, 2, 2]]), [1.0, 1.0])
    # 3: gt [0,0,3,3] (16 px) around the strong blob (4 px): 4 / 16 = 0.25 at both.
    np.testing.assert_allclose(metric.add(TWO_BLOBS, [[0, 0, 3, 3]]), [0.25, 0.25])
    # 4: gt [1,1,2,3] (6 px) vs [1,1,2,2] (4 px): 4 / 6 = 0.667 at both.
    np.testing.assert_allclose(metric.add(TWO_BLOBS, [[1, 1, 2, 3]]), [4 / 6, 4 / 6])
    # Hits at threshold 0: images 1, 2, 4 at IoU 0.3 and 0.5; images 1, 2 at 0.7.
    # Hits at threshold 0.5: images 2, 4 at IoU 0.3 and 0.5; image 2 at 0.7.
    summary = metric.summary()
    assert summary["accuracy"] == pytest.approx([75.0, 75.0, 50.0])
    assert summary["best_threshold"] == [0.0, 0.0, 0.0]
    assert summary["maxboxacc_v2"] == pytest.approx(200 / 3)
    assert summary["images"] == 4


def test_maxboxacc_threshold_rule_is_wsolevaluations():
    # Normalised values 0, 0.5, 1.0 and 0.002 -> 8-bit 0, int(127.5) = 127, 255, int(0.51) = 0.
    cam = np.array([[0.0, 0.5, 1.0, 0.002]])
    masks = MaxBoxAccV2(thresholds=[0.0, 0.49, 0.5]).masks(cam)
    # t = 0: q > 0 -- the tiny 0.002 pixel quantises to 0 and is out.
    # t = 0.49: q > int(124.95) = 124 -- 127 is in.  t = 0.5: q > 127 -- 127 is out (strict).
    assert masks.tolist() == [
        [[False, True, True, False]],
        [[False, True, True, False]],
        [[False, False, True, False]],
    ]
    # Min-max normalisation: shifting and scaling the map changes nothing.
    np.testing.assert_array_equal(MaxBoxAccV2().masks(cam * 7 - 3), MaxBoxAccV2().masks(cam))


def test_maxboxacc_constant_map_has_no_box():
    metric = MaxBoxAccV2(thresholds=[0.0, 0.5], protocol="cam-cli")
    np.testing.assert_array_equal(metric.add(np.ones((4, 4)), [[0, 0, 3, 3]]), [0.0, 0.0])
    assert metric.summary()["accuracy"] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="ground-truth box"):
        metric.add(TWO_BLOBS, np.zeros((0, 4)))


def test_maxboxacc_reproduce_wsol_boxes():
    # wsolevaluation boxes a component as (x, y, x + w, y + h), one pixel wider and taller than
    # the tight box: the strong blob becomes [1, 1, 3, 3] instead of [1, 1, 2, 2] (4 / 9 of it).
    gt = [[1, 1, 3, 3]]
    np.testing.assert_allclose(
        MaxBoxAccV2(thresholds=[0.5], protocol="cam-cli").add(TWO_BLOBS, gt), [4 / 9]
    )
    wsol = MaxBoxAccV2(thresholds=[0.5], reproduce_wsol_boxes=True, protocol="cam-cli")
    np.testing.assert_allclose(wsol.add(TWO_BLOBS, gt), [1.0])
    # At the border the weak blob's [4, 4, 6, 6] is clamped back to [4, 4, 5, 5].
    border = MaxBoxAccV2(thresholds=[0.0], reproduce_wsol_boxes=True, protocol="cam-cli")
    np.testing.assert_allclose(border.add(TWO_BLOBS, [[4, 4, 5, 5]]), [1.0])


def test_maxboxacc_matches_a_per_threshold_reference():
    rng = np.random.default_rng(0)
    cam = ndimage.gaussian_filter(rng.random((28, 28)), 2)
    gt = np.array([[3, 4, 15, 20], [18, 2, 26, 10]])
    metric = MaxBoxAccV2(thresholds=np.arange(0, 1, 0.05), protocol="cam-cli")
    best = metric.add(cam, gt)
    quantised = ((cam - cam.min()) / (cam.max() - cam.min()) * 255).astype(np.uint8)
    for t, got in zip(metric.thresholds, best, strict=True):
        labels, _ = ndimage.label(quantised > int(t * 255), structure=np.ones((3, 3)))
        boxes = [
            (s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1)
            for s in ndimage.find_objects(labels)
        ]
        expected = pairwise_iou_inclusive(boxes, gt).max() if boxes else 0.0
        assert got == pytest.approx(expected)


# --- presentation -----------------------------------------------------------------------------


def test_format_table():
    evaluator = LocalizationEvaluator()
    evaluator.add(record(pred(1, SNAKE, GT)), annotation((SNAKE, GT)))
    evaluator.add(record(pred(1, TENCH, GT)), annotation((SNAKE, GT)))
    evaluator.add({"path": "x", "error": "boom"}, annotation((SNAKE, GT)))
    metric = MaxBoxAccV2(thresholds=[0.0, 0.5], protocol="cam-cli")
    metric.add(TWO_BLOBS, [[4, 4, 5, 5]])
    metric.add(TWO_BLOBS, [[1, 1, 2, 2]])
    metric.add(TWO_BLOBS, [[0, 0, 3, 3]])
    table = format_table(evaluator.summary(), metric.summary())
    lines = table.splitlines()
    assert "3 images, 1 failed" in lines[0]
    row = next(line for line in lines if line.startswith("classification error"))
    assert row.split()[-2:] == ["66.67", "66.67"]  # 2 of 3 wrong
    gt_known = next(line for line in lines if line.startswith("GT-known"))
    assert gt_known.split()[-2:] == ["-", "-"]
    assert any("baseline: whole-image box" in line for line in lines)
    assert any("baseline: centred median-size box" in line for line in lines)
    assert "MaxBoxAccV2" in table
    assert "IoU >= 0.7: 66.67 at CAM threshold 0.00" in table
    # Columns line up.
    header = lines[1]
    assert len({len(line) for line in lines[1:7]}) == 1, table
    assert header.rstrip().endswith("top-5")
