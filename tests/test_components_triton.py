"""The triton box step and sweep equal scipy's boxes and the torch sweep, map for map.

Without CUDA they run under ``TRITON_INTERPRET=1`` (set here before the kernels are first
imported): Triton executes each program with numpy, one after another, which proves the labelling
logic and its exactness (not the GPU's concurrency: `triton_problem`'s self-check on the device
covers that at first use). The interpreter is slow, so the maps here are mostly small; the
224x224 adversarial ones and the real sample's CAMs are few. With CUDA the same tests run the
compiled kernels there, marked gpu.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

# Triton reads TRITON_INTERPRET when it is imported: without CUDA, set it first.
if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is not installed")
# On a GPU machine these run the real kernels on CUDA: scripts/device_check.sh selects -m gpu.
pytestmark = [pytest.mark.gpu] if torch.cuda.is_available() else []

from test_components import checkerboard, maze, rings, smooth_maps, snake, spiral  # noqa: E402
from test_maxboxacc_torch import _smooth  # noqa: E402

from cam_cli.boxes import components_triton as ct  # noqa: E402
from cam_cli.boxes.components import boxes_from_cams, boxes_from_masks  # noqa: E402
from cam_cli.boxes.components_torch import boxes_from_cams_torch  # noqa: E402
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2  # noqa: E402
from cam_cli.evaluation.maxboxacc.sweep_torch import best_ious_torch, pad_gt_boxes  # noqa: E402


@pytest.fixture(scope="module")
def device():
    """CUDA where there is one; else the CPU under the interpreter (set above)."""
    if torch.cuda.is_available():
        yield torch.device("cuda")
        return
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set in this process")
    ct._checked.clear()  # noqa: SLF001 - the self-check's cache, reset per test
    yield torch.device("cpu")
    ct._checked.clear()  # noqa: SLF001 - the self-check's cache, reset per test


def triton_mask_boxes(masks: np.ndarray, device) -> np.ndarray:
    return ct.boxes_from_masks_triton(torch.from_numpy(masks).to(device)).cpu().numpy()


def assert_masks_equal_scipy(masks: np.ndarray, device) -> None:
    want = boxes_from_masks(masks)
    got = triton_mask_boxes(masks, device)
    bad = np.nonzero((want != got).any(axis=1))[0]
    assert len(bad) == 0, f"map {bad[0]}: scipy {want[bad[0]]}, triton {got[bad[0]]}"


def assert_cams_equal_scipy(cams: np.ndarray, device, threshold: float = 0.2) -> None:
    want = boxes_from_cams(cams, threshold)
    got = ct.boxes_from_cams_triton(torch.from_numpy(cams).to(device), threshold).cpu().numpy()
    bad = np.nonzero((want != got).any(axis=1))[0]
    assert len(bad) == 0, f"map {bad[0]}: scipy {want[bad[0]]}, triton {got[bad[0]]}"


def test_hand_made_masks(device):
    ties = np.zeros((9, 12), dtype=bool)
    ties[1, 8:11] = ties[5:8, 1] = True  # three pixels each: the first row's wins
    diagonal = np.eye(9, 12, dtype=bool)  # one component through corners only
    blocks = np.zeros((9, 12), dtype=bool)
    blocks[1, 1] = blocks[2, 2] = True  # corner-touching across 2x2 blocks
    blocks[4, 7] = blocks[5, 6] = blocks[6, 5] = True  # up-right diagonal: larger
    stack = np.stack([ties, diagonal, blocks, np.zeros((9, 12), bool), np.ones((9, 12), bool)])
    got = triton_mask_boxes(stack, device).tolist()
    assert got == [[8, 1, 10, 1], [0, 0, 8, 8], [5, 4, 7, 6], [0, 0, 11, 8], [0, 0, 11, 8]]
    assert_masks_equal_scipy(stack, device)


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (2, 2), (3, 5), (7, 13), (13, 7)])
def test_tiny_and_odd_maps(device, shape):
    rng = np.random.default_rng(sum(shape))
    masks = rng.random((40, *shape)) < rng.random((40, 1, 1))
    assert_masks_equal_scipy(masks, device)


@pytest.mark.parametrize("shape", [(32, 32), (17, 45), (45, 17), (24, 31)])
@pytest.mark.parametrize("density", [0.15, 0.45, 0.7])
def test_random_masks(device, shape, density):
    rng = np.random.default_rng(int(density * 100) + shape[0])
    assert_masks_equal_scipy(rng.random((24, *shape)) < density, device)


def test_narrow_programs_cross_many_chunks(device, monkeypatch):
    """Blocks of 64 per program: components span many programs (on a GPU, many at once)."""
    monkeypatch.setattr(ct, "BLOCK", 64)
    monkeypatch.setattr(ct, "INTERPRETED_BLOCK", 64)
    rng = np.random.default_rng(9)
    stack = np.stack([spiral(30, 30)[0], snake(30, 30), maze(30, 30, 1), checkerboard(30, 30),
                      rings(30, 30), rng.random((30, 30)) < 0.5])  # fmt: skip
    assert_masks_equal_scipy(stack, device)


@pytest.mark.slow
def test_adversarial_families_at_224(device):
    spiral_mask = spiral(224, 224)[0]
    cut = spiral_mask.copy()
    cut[112, :] = False  # the spiral cut in many pieces
    stack = np.stack([spiral_mask, cut, snake(224, 224), maze(224, 224, 0), checkerboard(224, 224),
                      checkerboard(224, 224, 3), rings(224, 224)])  # fmt: skip
    assert_masks_equal_scipy(stack, device)
    assert triton_mask_boxes(stack[:1], device).tolist() == [[0, 0, 223, 223]]


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(7, 13), (224, 160), (40, 56)])
def test_adversarial_families_non_square(device, shape):
    h, w = shape
    stack = np.stack([spiral(h, w)[0], snake(h, w), maze(h, w, 2), checkerboard(h, w),
                      rings(h, w)])  # fmt: skip
    assert_masks_equal_scipy(stack, device)


@pytest.mark.slow
def test_cam_like_maps_dtypes_and_degenerate_maps(device):
    cams = smooth_maps(30, 7, (40, 56), seed=4)
    assert_cams_equal_scipy(cams, device)
    assert_cams_equal_scipy(cams.astype(np.float64), device, threshold=0.35)
    odd = cams[:6].copy()
    odd[0] = 0.3  # constant
    odd[1] = -np.abs(odd[1])  # max <= 0
    odd[2, 5, 5] = np.nan
    odd[3] = 0.0
    odd[3, 20, 30] = 1.0  # one pixel
    assert_cams_equal_scipy(odd, device)
    for dtype in (torch.bfloat16, torch.float16):
        half = torch.from_numpy(cams).to(dtype).to(device)
        assert torch.equal(ct.boxes_from_cams_triton(half).cpu(), boxes_from_cams_torch(half).cpu())
    assert ct.boxes_from_cams_triton(torch.zeros((0, 5, 4), device=device)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        ct.boxes_from_cams_triton(torch.ones(5, 7, device=device))
    with pytest.raises(TypeError, match="floating"):
        ct.boxes_from_cams_triton(torch.ones(1, 5, 7, dtype=torch.int64, device=device))


def test_triton_problem_says_why_not_and_checks_itself(device, monkeypatch):
    assert ct.triton_problem(device) is None  # the self-check passed
    from cam_cli.boxes.backends import resolve_box_backend

    assert resolve_box_backend("triton", device) == "triton"
    assert resolve_box_backend("auto", torch.device("cpu")) == "scipy"
    if device.type == "cpu":
        monkeypatch.delenv("TRITON_INTERPRET")
        monkeypatch.setattr(ct, "_checked", {})
        assert "not on cpu" in ct.triton_problem(torch.device("cpu"))


def _sweep_cases(rng, size=(20, 26)) -> tuple[torch.Tensor, list[np.ndarray]]:
    cams, gts = [], []
    for i in range(7):
        cam = _smooth(rng, (3, 7)[i % 2], size)
        if i == 1:
            cam[:] = 0.7  # constant: no component
        if i == 2:
            cam[3, 4] = np.nan
        if i == 3:
            cam = np.zeros_like(cam)
            cam[10, 12] = 1.0  # one pixel above every threshold
        boxes = []
        for _ in range(0 if i == 4 else 1 + i % 3):  # image 4 has no box
            x0, y0 = rng.integers(0, size[1] - 4), rng.integers(0, size[0] - 4)
            boxes.append([x0, y0, x0 + rng.integers(0, 10), y0 + rng.integers(0, 8)])
        cams.append(cam)
        gts.append(np.array(boxes, dtype=np.int64).reshape(-1, 4))
    return torch.from_numpy(np.stack(cams)), gts


@pytest.mark.slow
@pytest.mark.parametrize("wsol", [False, True])
def test_sweep_equals_the_torch_sweep(device, wsol):
    from cam_cli.evaluation.maxboxacc.sweep_triton import best_ious_triton

    cams, gts = _sweep_cases(np.random.default_rng(2))
    boxes, valid = pad_gt_boxes(gts, device)
    thresholds = MaxBoxAccV2().thresholds[::9]
    want = best_ious_torch(cams.to(device), boxes, valid, thresholds, wsol)
    got = best_ious_triton(cams.to(device), boxes, valid, thresholds, wsol)
    assert got.dtype == torch.float64
    assert got.shape == (7, len(thresholds))
    assert torch.equal(got, want)  # equal, not close
    assert (got[4] == 0).all()
    assert (got[1] == 0).all()
    assert got.max() > 0.2


@pytest.mark.slow
def test_real_sample_cams_boxes_and_sweep(device, sample_dir, mobilenet_weights):
    """Top-5 CAMs of real images at 224x224: the triton boxes are scipy's, and the sweep of the
    true class's CAM equals the torch sweep."""
    from cam_cli.data.annotations import read_annotations
    from cam_cli.data.batches import ImageListDataset, collate_images
    from cam_cli.evaluation.gt_boxes import gt_boxes_in_grid
    from cam_cli.evaluation.maxboxacc.sweep_triton import best_ious_triton
    from cam_cli.inference.localizer import Localizer
    from cam_cli.models.loading import load_model

    loaded = load_model(arch="mobilenet_v2", weights=str(mobilenet_weights),
                        classes_file=sample_dir / "LOC_synset_mapping.txt")  # fmt: skip
    paths = sorted(str(p) for p in (sample_dir / "val").iterdir())[:3]
    dataset = ImageListDataset(paths, 224)
    batch = collate_images([dataset[i] for i in range(len(paths))])
    out = Localizer(loaded, topk=5, fast=False).launch_batch(batch)
    maps = out.upsampled.flatten(0, 1).contiguous()  # 15 maps
    assert_cams_equal_scipy(maps.numpy(), device)
    truth = read_annotations(sample_dir / "LOC_val_solution.csv")
    stems = [os.path.basename(p).rsplit(".", 1)[0] for p in paths]
    gts = [gt_boxes_in_grid(truth[stem], item.width, item.height, (224, 224))
           for stem, item in zip(stems, batch.items, strict=True)]  # fmt: skip
    boxes, valid = pad_gt_boxes(gts, device)
    thresholds = MaxBoxAccV2().thresholds[10::20]
    cams = out.upsampled[:, 0].contiguous().to(device)
    want = best_ious_torch(cams, boxes, valid, thresholds)
    assert torch.equal(best_ious_triton(cams, boxes, valid, thresholds), want)
    assert want.max() > 0.5


@pytest.mark.slow
def test_localizer_with_the_triton_step_writes_scipys_records(
    device, sample_dir, mobilenet_weights
):
    """box_backend="triton" through the whole pipeline (the main thread queues the boxes with the
    forward, one copy to the host): the same records as the scipy step's, extra class too."""
    from cam_cli.inference.localizer import Localizer
    from cam_cli.models.loading import load_model

    loaded = load_model(arch="mobilenet_v2", weights=str(mobilenet_weights),
                        classes_file=sample_dir / "LOC_synset_mapping.txt")  # fmt: skip
    paths = sorted(str(p) for p in (sample_dir / "val").iterdir())[:3]
    records = {}
    for step in ("scipy", "triton"):
        # one lane: the interpreter is not thread-safe (two lanes would run it at once)
        localizer = Localizer(loaded, topk=2, fast=False, box_backend=step, device=str(device),
                              lanes=1)  # fmt: skip
        assert localizer.box_backend == step
        assert localizer.boxes_on_device == (step == "triton")
        results = localizer.localize(paths, extra_classes=lambda path: [7], batch_size=2)
        records[step] = [(r.as_record(), [p.box for p in r.extra]) for r in results]
    assert records["triton"] == records["scipy"]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter's lanes: a CPU run")
def test_the_command_under_the_interpreter_with_two_lanes_equals_the_torch_step(fake, tmp_path):
    """Issue 25 (5): `bbox --box-step triton` under TRITON_INTERPRET=1 failed on a 2-core CPU
    (two lanes launched at once; "Did you forget to add @triton.jit?"): the command as users
    run it, two lanes, gives the torch step's records byte for byte."""
    from conftest import model_args, run_cli, write_image

    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(24):  # three batches of two slices: the lanes' launches meet (3 of 3 before)
        write_image(images / f"{i}.jpg", seed=i, size=(48 + i, 40))
    args = ["bbox", *model_args(fake), "--images", images, "--batch-size", "8"]
    lanes = {"OMP_NUM_THREADS": "2"}  # one lane per thread: two lanes, whatever the machine
    triton = run_cli(*args, "--box-step", "triton",
                     env_extra={**lanes, "TRITON_INTERPRET": "1"})  # fmt: skip
    assert triton.returncode == 0, triton.stderr.decode()[-2000:]
    torch_step = run_cli(*args, "--box-step", "torch", env_extra=lanes)
    assert torch_step.returncode == 0, torch_step.stderr.decode()[-2000:]
    assert triton.stdout == torch_step.stdout
    assert triton.stdout.count(b"\n") == 24
