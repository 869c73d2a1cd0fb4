"""CUDA checks, run by scripts/gpu_check.sh on a machine with a GPU (skipped where torch sees none):
device placement, a CUDA run against a CPU run, and the loss and bound on the GPU."""

import numpy as np
import pytest
import torch
from helpers import TINY

from fatviz.losses import FATLoss, triplet_bound
from fatviz.train import Trainer, prepare_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh)")



def test_auto_device_places_model_and_data_on_the_gpu():
    trainer = Trainer(TINY, prepare_data(TINY))
    assert trainer.device.type == "cuda"
    assert trainer.x_train.is_cuda and next(trainer.model.parameters()).is_cuda
    result = trainer.fit()
    assert result.device.startswith("cuda")
    assert all(not t.is_cuda for t in result.state_dict.values())  # saved runs load on any machine


def test_a_cuda_run_matches_a_cpu_run_within_tolerance():
    data = prepare_data(TINY)
    gpu = Trainer(TINY.replace(device="cuda"), data).fit()
    cpu = Trainer(TINY.replace(device="cpu"), data).fit()
    # Same seed, same data, same order; kernels differ in rounding only.
    np.testing.assert_allclose(gpu.snapshots[1].embeddings, cpu.snapshots[1].embeddings, atol=2e-3)
    assert abs(gpu.final_metrics["precision_at_1"] - cpu.final_metrics["precision_at_1"]) <= 0.05


@pytest.mark.parametrize("option", ["mean", "norm-mean-norm"])
def test_loss_and_bound_on_the_gpu_equal_the_cpu(option):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=g)
    y = torch.randint(0, 8, (512,), generator=g)
    loss = FATLoss(option)
    cpu = loss(x, y)
    gpu = loss(x.cuda(), y.cuda())
    assert gpu.is_cuda and float(gpu) == pytest.approx(float(cpu), rel=1e-4, abs=1e-6)
    b_cpu, b_gpu = triplet_bound(x, y, option), triplet_bound(x.cuda(), y.cuda(), option)
    assert b_gpu.bound >= b_gpu.exact
    assert b_gpu.exact == pytest.approx(b_cpu.exact, rel=1e-3) and b_gpu.bound == pytest.approx(b_cpu.bound, rel=1e-3)
