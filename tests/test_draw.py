"""`bbox --draw`'s pictures (`outputs.draw`): small images enlarged crisp by a whole factor,
boxes on exactly their enlarged pixels, five rank tags apart, a key below, and each record
naming the picture drawn for it (only with ``--draw``), also when two inputs share a name."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import numpy as np
from conftest import invoke, model_args
from PIL import Image

from cam_cli.outputs.draw import draw_boxes, drawing_layout, drawing_scale
from cam_cli.outputs.marks import hex_rgb, rank_colour

BLACK = (0, 0, 0)


def _prediction(rank: int, box, name: str = "thing", score: float = 0.5) -> dict:
    return {"rank": rank, "class_index": rank, "wnid": f"n{rank}", "name": name, "score": score,
            "box": list(box)}  # fmt: skip


def test_the_enlargement_rule() -> None:
    # short side under 320: the smallest whole factor that reaches it; the long side kept <= 4096
    assert drawing_scale(64, 64) == 5
    assert drawing_scale(227, 227) == 2
    assert drawing_scale(100, 60) == 6
    assert drawing_scale(500, 375) == 1
    assert drawing_scale(2000, 100) == 2  # 4 would reach 320, but 8000 px is over the cap


def test_boxes_on_exactly_their_scaled_pixels_on_a_non_square_image() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8)
    thin = _prediction(1, (10, 20, 10, 30))  # one pixel wide
    wide = _prediction(2, (50, 5, 89, 44))
    picture = np.asarray(draw_boxes(Image.fromarray(pixels), [thin, wide]))
    # 100 x 60: short side 60 -> 6 times (ceil(320 / 60)), 600 x 360, then the key below
    assert picture.shape[1] == 600
    assert picture.shape[0] > 360
    enlarged = pixels.repeat(6, axis=0).repeat(6, axis=1)
    first, second = hex_rgb(rank_colour(1)), hex_rgb(rank_colour(2))
    # the thin box: image column 10 -> 60..65, rows 20..30 -> 120..185; a 2 px band
    # (360 / 160 -> 2) inside, black casings at 59 and 66 and inside at 62..63
    row = [tuple(v) for v in picture[150, 58:68]]
    assert row[1:9] == [BLACK, first, first, BLACK, BLACK, first, first, BLACK]
    assert row[0] == tuple(enlarged[150, 58])
    assert row[9] == tuple(enlarged[150, 67])
    column = [tuple(v) for v in picture[182:188, 63]]  # its bottom edge: row 185 (its tag on top)
    assert column == [BLACK, BLACK, first, first, BLACK, tuple(enlarged[187, 63])]
    # the wide box: columns 50..89 -> 300..539, rows 5..44 -> 30..269
    assert tuple(picture[150, 299]) == BLACK
    assert tuple(picture[150, 540]) == BLACK
    assert tuple(picture[150, 300]) == second
    assert tuple(picture[150, 539]) == second
    assert tuple(picture[269, 400]) == second
    assert tuple(picture[270, 400]) == BLACK
    assert tuple(picture[271, 400]) == tuple(enlarged[271, 400])
    # away from the marks, the image's own pixels, each a crisp 6 x 6 square
    assert (picture[280:360] == enlarged[280:360]).all()


def _apart(rects) -> bool:
    return all(
        a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
        for a, b in itertools.combinations(rects, 2)
    )


def test_five_tags_are_apart_and_drawn_in_their_ranks_colours() -> None:
    for size, boxes in [
        ((64, 64), [(0, 0, 63, 63)] * 5),  # Tiny ImageNet: five ranks, one box
        (
            (64, 64),
            [(6, 0, 63, 50), (6, 5, 63, 47), (0, 0, 63, 49), (0, 0, 63, 50), (0, 0, 63, 51)],
        ),
        (
            (227, 227),
            [
                (31, 53, 226, 226),
                (37, 60, 226, 226),
                (22, 49, 226, 226),
                (0, 0, 226, 226),
                (40, 58, 226, 226),
            ],
        ),  # fmt: skip
        (
            (300, 200),
            [
                (10, 10, 12, 12),
                (11, 11, 13, 13),
                (10, 12, 14, 14),
                (9, 9, 11, 10),
                (12, 10, 13, 11),
            ],
        ),  # fmt: skip
    ]:
        predictions = [_prediction(r, b) for r, b in enumerate(boxes, start=1)]
        layout = drawing_layout(size, predictions)
        assert _apart(layout.tags), (size, layout.tags)
        picture = np.asarray(draw_boxes(Image.new("RGB", size, (128, 128, 128)), predictions))
        for rank, (x0, y0, x1, _) in zip(layout.ranks, layout.tags, strict=True):
            assert tuple(picture[y0 + 1, x0 + 1]) == hex_rgb(rank_colour(rank))
            assert tuple(picture[y0, x1]) == BLACK  # its casing: drawn over by nothing
        # the tags stay small beside the enlarged image: each under 1/200 of it
        w, h = layout.size
        assert all((t[2] - t[0] + 1) * (t[3] - t[1] + 1) < w * h / 200 for t in layout.tags)


def _records(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_records_name_their_drawing_only_with_draw(fake, tmp_path) -> None:
    images = fake / "imgs" / "a.jpg", fake / "imgs" / "b.jpg"
    plain = _records(invoke("bbox", *model_args(fake), "--images", *images, "--topk", "2"))
    drawn = _records(invoke("bbox", *model_args(fake), "--images", *images, "--topk", "2",
                            "--draw", tmp_path / "d"))  # fmt: skip
    assert all("drawing" not in r for r in plain)
    assert [r["drawing"] for r in drawn] == [str(tmp_path / "d" / f"{s}_boxes.png") for s in "ab"]
    assert [{k: v for k, v in r.items() if k != "drawing"} for r in drawn] == plain
    for record in drawn:
        with Image.open(record["drawing"]) as picture:  # 48 x 40: 8 times (ceil(320 / 40))
            assert picture.width == 8 * record["width"]

    def header(*extra) -> list[str]:
        args = ("--images", *images, "--format", "csv", *extra)
        return next(csv.reader(io.StringIO(invoke("bbox", *model_args(fake), *args).stdout)))

    assert "drawing" not in header()
    assert header("--draw", tmp_path / "c")[-1] == "drawing"
    coco = invoke("bbox", *model_args(fake), "--images", *images, "--format", "coco",
                  "--draw", tmp_path / "k")  # fmt: skip
    named = [image["drawing"] for image in json.loads(coco.stdout)["images"]]
    assert named == [str(tmp_path / "k" / f"{s}_boxes.png") for s in "ab"]


def test_two_images_with_one_name_each_name_their_own_picture(fake, tmp_path) -> None:
    colours = {"left": (200, 30, 30), "right": (30, 30, 200)}
    for folder, colour in colours.items():
        (tmp_path / folder).mkdir()
        Image.new("RGB", (50, 40), colour).save(tmp_path / folder / "x.png")
    draw = tmp_path / "draw"
    records = _records(invoke("bbox", *model_args(fake), "--images", tmp_path / "left",
                              tmp_path / "right", "--draw", draw))  # fmt: skip
    by_folder = {Path(r["path"]).parent.name: Path(r["drawing"]) for r in records}
    assert sorted(p.name for p in by_folder.values()) == ["x-2_boxes.png", "x_boxes.png"]
    for folder, colour in colours.items():
        with Image.open(by_folder[folder]) as picture:
            # 50 x 40 -> 8 times: 400 x 320 above the key; most of it is the image's own colour
            pixels = np.asarray(picture.convert("RGB"))[:320]
            values, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
            assert tuple(values[counts.argmax()]) == colour, folder
