"""The memory-traffic counter of scripts/benchmarks/traffic_count.py on ops whose bytes are
obvious."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "benchmarks"))

from bench_box_traffic import family_maps  # noqa: E402
from traffic_count import TrafficCounter  # noqa: E402

MB = 2**20


def one_mb(value: float = 1.0) -> torch.Tensor:
    return torch.full((MB // 4,), value, dtype=torch.float32)


@torch.library.custom_op("traffic_test::double_", mutates_args=("x",))
def double_(x: torch.Tensor) -> None:
    x.mul_(2)


def test_add_reads_two_and_writes_one():
    a, b = one_mb(), one_mb()
    with TrafficCounter() as counter:
        torch.add(a, b)
    assert counter.total_bytes == 3 * MB
    assert counter.op_count == 1
    assert list(counter.ops) == ["aten.add.Tensor"]


def test_in_place_counts_the_written_tensor_twice():
    a, b = one_mb(), one_mb()
    with TrafficCounter() as counter:
        a.add_(b)
    assert counter.ops["aten.add_.Tensor"].bytes == 3 * MB  # a read, b read, a written


def test_out_counts_the_destination_as_argument_and_output():
    a, b, out = one_mb(), one_mb(), one_mb()
    with TrafficCounter() as counter:
        torch.minimum(a, b, out=out)
    assert counter.ops["aten.minimum.out"].bytes == 4 * MB
    assert counter.write_once_bytes == 3 * MB  # out= is only written: once in the second figure


def test_copy_writes_its_destination_without_reading_it():
    a, b = one_mb(), one_mb()
    with TrafficCounter() as counter:
        a.copy_(b)
        a.add_(b)  # reads a: read + write in both figures
    assert counter.total_bytes == 6 * MB
    assert counter.write_once_bytes == 5 * MB


def test_views_count_their_own_size_and_move_nothing_themselves():
    a = torch.ones(2, MB // 4)  # 2 MB
    with TrafficCounter() as counter:
        half = a[0]  # a view: no traffic of its own
        half.neg()  # reads the 1 MB view (not the 2 MB base), writes 1 MB
    assert counter.total_bytes == 2 * MB
    assert counter.free_bytes > 0
    assert counter.op_count == 1


def test_a_custom_op_with_a_mutated_argument_is_seen_and_counted():
    x = one_mb()
    with TrafficCounter() as counter:
        double_(x)
    assert counter.custom("traffic_test") == counter.ops
    (tally,) = counter.ops.values()
    assert tally.count == 1
    assert tally.bytes == tally.write_once == 2 * MB
    assert x[0] == 2.0  # it ran


def test_sync_inference_flags_data_dependent_ops_only():
    a = torch.tensor([0.0, 1.0, 2.0])
    with TrafficCounter() as counter:
        (a + 1).nonzero()
        a.sum().item()
    assert counter.syncs == {"aten.nonzero.default": 1, "aten._local_scalar_dense.default": 1}


@pytest.mark.parametrize("family", ["spiral", "snake", "maze", "checkerboard"])
def test_adversarial_families_are_one_component(family):
    maps = family_maps(family, 2, size=33)
    assert maps.shape == (2, 33, 33)
    assert maps.min() == 0.0
    mask = maps[0] > 0.2 * maps[0].max()
    _, count = ndimage.label(mask, structure=np.ones((3, 3)))
    assert count == 1
    assert mask.sum() > 33 * 33 // 3


def test_blocking_copies_between_host_and_device_are_flagged():
    """The meta device stands in for CUDA: only the copy that would block is a sync."""
    a = torch.ones(4)
    with TrafficCounter() as counter:
        a.to("meta")
        a.to("meta", non_blocking=True)
        a.clone()  # host to host: no device to wait for
    assert counter.syncs == {"aten._to_copy.default": 1}
