"""choose_precision: fp32 off CUDA, fp16 + GradScaler on T4-class GPUs, bf16 from Ampere on."""

from __future__ import annotations

import pytest
import torch

from kpop_helpers.colab import gpu_info
from kpop_helpers.precision import PrecisionChoice, choose_precision


@pytest.mark.parametrize("capability", [(7, 5), (7, 0), (6, 0)])
def test_pre_ampere_gpus_get_fp16_with_a_scaler(capability):
    choice = choose_precision("cuda:0", capability=capability)
    assert (choice.name, choice.dtype, choice.grad_scaler) == ("fp16", torch.float16, True)
    assert choice.autocast and choice.accelerate_mixed_precision == "fp16"
    assert f"compute capability {capability[0]}.{capability[1]}" in choice.reason
    assert "no native bf16" in choice.reason and "gradient scaler" in choice.reason


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (8, 9), (9, 0)])
def test_ampere_and_newer_get_bf16_without_a_scaler(capability):
    choice = choose_precision(torch.device("cuda", 0), capability=capability)
    assert (choice.name, choice.dtype, choice.grad_scaler) == ("bf16", torch.bfloat16, False)
    assert choice.accelerate_mixed_precision == "bf16"
    assert "native bf16" in choice.reason


@pytest.mark.parametrize("device", ["cpu", "mps", torch.device("cpu")])
def test_cpu_and_mps_train_in_fp32(device):
    choice = choose_precision(device, capability=(9, 0))  # a capability is irrelevant off CUDA
    assert (choice.name, choice.dtype, choice.grad_scaler, choice.autocast) == ("fp32", torch.float32, False, False)
    assert choice.accelerate_mixed_precision == "no"


def test_amp_off_means_fp32_on_any_gpu():
    choice = choose_precision("cuda", amp=False, capability=(8, 0))
    assert choice.name == "fp32" and not choice.grad_scaler and "amp=False" in choice.reason


def test_choice_is_frozen():
    choice = choose_precision("cpu")
    assert isinstance(choice, PrecisionChoice)
    with pytest.raises(AttributeError):
        choice.name = "bf16"  # type: ignore[misc]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_and_without_capability_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        choose_precision("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_capability_is_read_from_the_gpu():
    major, _ = torch.cuda.get_device_capability(0)
    assert choose_precision("cuda:0").name == ("bf16" if major >= 8 else "fp16")


def test_gpu_info_reports_the_precision():
    info = gpu_info()
    expected = choose_precision("cuda:0" if info["available"] else ("mps" if info.get("mps") else "cpu"))
    assert info["precision"] == {"name": expected.name, "reason": expected.reason}
