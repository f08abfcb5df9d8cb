"""The device and precision policy: one place decides, and a wrong device is one clear line."""

from __future__ import annotations

import pytest
import torch

from cam_cli.errors import SetupError
from cam_cli.runtime.device import Precision, low_precision_dtype, resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("tpu", "not a device"),
        ("meta", "runs on the CPU or CUDA"),
        ("mps", "runs on the CPU or CUDA"),
        ("gpu0", "not a device"),
    ],
)
def test_devices_cam_cli_cannot_use_are_refused_in_one_line(name, reason):
    with pytest.raises(SetupError, match=reason) as error:
        resolve_device(name)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(SetupError, match="no CUDA device"):
        resolve_device("cuda:0")


def test_precision_policy_is_shared_by_inference_and_training():
    cpu = torch.device("cpu")
    assert low_precision_dtype(cpu) == torch.bfloat16
    off = Precision(cpu, enabled=False)
    assert not off.enabled
    assert not off.needs_grad_scaling
    with off.autocast():
        assert not torch.is_autocast_enabled("cpu")
    on = Precision(cpu, enabled=True)
    with on.autocast():
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert not on.needs_grad_scaling  # bf16 needs no loss scaling; only fp16 on CUDA does


def test_the_library_names_its_argument_and_the_cli_its_flag(tmp_path):
    """A wrong device is the library's ``device 'tpu': ...`` and the command line's
    ``--device 'tpu': ...``: the same line either way, each in its own words."""
    from conftest import invoke, one_line_error

    with pytest.raises(SetupError) as error:
        resolve_device("tpu")
    assert str(error.value).startswith("device 'tpu': not a device; use ")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (40, 30)).save(image)
    result = invoke("bbox", "--arch", "small-gap", "--images", image, "--device", "tpu", "-q")
    one_line_error(result, "cam-cli: error: --device 'tpu': not a device; use ")
