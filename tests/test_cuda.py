"""The CUDA paths: training with bf16 autocast, GPU checkpoints on a CPU, NVML (compaction on the GPU:
``test_model.test_compacted_execution_equals_masked_execution[cuda]``).

Skipped where no CUDA device is present (CI, the 2-core development machine); run on a lent GPU with
``python -m pytest tests/test_cuda.py``.
"""
from __future__ import annotations

import pytest
import torch

from iamnn_studio.engine.checkpoint import load_checkpoint
from iamnn_studio.engine.trainer import Trainer
from test_trainer import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_a_run_trains_calibrates_and_evaluates_on_the_gpu_and_its_checkpoint_loads_on_a_cpu(tmp_runs):
    config = tiny_config(device="cuda", calibrate_halting=True, epochs=2)
    result = Trainer(config, runs_dir=tmp_runs).run()
    assert result.ok, result.reason
    checkpoint = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")  # map_location="cpu"
    model = checkpoint.model.eval()
    assert all(p.device.type == "cpu" for p in model.parameters())
    x = torch.randn(16, model.config.in_channels, model.config.image_size, model.config.image_size)
    with torch.no_grad():
        on_cpu = model(x)
        on_gpu = model.to("cuda")(x.cuda())
    assert torch.equal(on_cpu.iterations, on_gpu.iterations.cpu())
    assert torch.allclose(on_cpu.logits, on_gpu.logits.cpu(), atol=1e-3)


def test_nvml_reads_the_gpu_the_trainer_uses():
    from iamnn_studio.engine.system import SystemMonitor, cuda_device_uuid

    with SystemMonitor(cuda_device_uuid(0)) as monitor:
        sample = monitor.sample()
    assert monitor.gpu_available, monitor.gpu_error
    assert monitor.gpu_name and torch.cuda.get_device_name(0).split()[-1] in monitor.gpu_name
    assert 0 <= sample["gpu_util"] <= 100
    assert 0 < sample["gpu_mem_used"] <= sample["gpu_mem_total"]
