"""SystemMonitor against a fake `pynvml`: GPU figures, a metric the GPU lacks, no GPU at all."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from iamnn_studio.engine.system import NO_GPU_MESSAGE, SAMPLE_KEYS, SystemMonitor

GIB = 1024**3
UUID = "GPU-1a2b3c4d-0000-1111-2222-333344445555"


def make_fake_nvml(*, init_error: str | None = None, unsupported: set[str] = frozenset()):
    """A module that behaves like nvidia-ml-py's `pynvml` with two GPUs.

    `init_error`: nvmlInit raises an NVMLError with this text. `unsupported`: names of NVML
    functions that raise NVMLError_NotSupported.
    """
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's spelling)
        pass

    class NVMLError_NotFound(NVMLError):  # noqa: N801
        pass

    nvml.NVMLError = NVMLError
    nvml.NVMLError_NotSupported = NVMLError_NotSupported
    nvml.NVML_TEMPERATURE_GPU = 0
    gpus = [
        SimpleNamespace(uuid="GPU-ffff0000-0000-0000-0000-000000000000", name="Fake A100",
                        util=5, used=1 * GIB, total=40 * GIB, temp=35, mw=60_000),
        SimpleNamespace(uuid=UUID, name="Fake H100", util=87, used=12 * GIB, total=80 * GIB,
                        temp=71, mw=312_500),
    ]
    nvml.calls = []

    def call(name, result):
        def fn(*args):
            nvml.calls.append(name)
            if name in unsupported:
                raise NVMLError_NotSupported("Not Supported")
            return result(*args)

        setattr(nvml, name, fn)

    def init():
        nvml.calls.append("nvmlInit")
        if init_error:
            raise NVMLError(init_error)

    def by_uuid(uuid):
        for gpu in gpus:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError_NotFound("Not Found")

    nvml.nvmlInit = init
    call("nvmlShutdown", lambda: None)
    call("nvmlDeviceGetCount", lambda: len(gpus))
    call("nvmlDeviceGetHandleByIndex", lambda i: gpus[i])
    call("nvmlDeviceGetHandleByUUID", by_uuid)
    call("nvmlDeviceGetName", lambda h: h.name)
    call("nvmlDeviceGetUUID", lambda h: h.uuid)
    call("nvmlSystemGetDriverVersion", lambda: "580.95.05")
    call("nvmlDeviceGetUtilizationRates", lambda h: SimpleNamespace(gpu=h.util, memory=0))
    call("nvmlDeviceGetMemoryInfo", lambda h: SimpleNamespace(used=h.used, total=h.total))
    call("nvmlDeviceGetTemperature", lambda h, sensor: h.temp)
    call("nvmlDeviceGetPowerUsage", lambda h: h.mw)
    return nvml


@pytest.fixture
def fake_nvml(monkeypatch):
    def install(**kwargs):
        nvml = make_fake_nvml(**kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", nvml)
        return nvml

    return install


def assert_cpu_and_ram_present(sample):
    assert 0.0 <= sample["cpu_util"] <= 100.0
    assert 0 < sample["ram_used"] <= sample["ram_total"]


def test_gpu_matched_by_uuid_reports_its_own_figures_in_si_units(fake_nvml):
    nvml = fake_nvml()
    with SystemMonitor(uuid=UUID) as monitor:
        assert monitor.gpu_available
        assert monitor.gpu_message == "Fake H100"
        sample = monitor.sample()
    assert set(sample) == set(SAMPLE_KEYS)
    assert sample["gpu_util"] == 87.0
    assert sample["gpu_mem_used"] == 12 * GIB
    assert sample["gpu_mem_total"] == 80 * GIB
    assert sample["gpu_temp"] == 71.0
    assert sample["gpu_power"] == pytest.approx(312.5)  # NVML reports milliwatts
    assert_cpu_and_ram_present(sample)
    assert "nvmlDeviceGetHandleByIndex" not in nvml.calls  # the UUID, not an index, picked it
    assert nvml.calls[-1] == "nvmlShutdown"


def test_without_uuid_the_first_nvml_gpu_is_watched(fake_nvml):
    fake_nvml()
    monitor = SystemMonitor()
    assert monitor.sample()["gpu_mem_total"] == 40 * GIB
    monitor.close()
    monitor.close()  # closing twice is harmless


def test_unsupported_metric_is_none_and_the_others_still_report(fake_nvml):
    fake_nvml(unsupported={"nvmlDeviceGetPowerUsage"})
    with SystemMonitor(uuid=UUID) as monitor:
        sample = monitor.sample()
        assert monitor.metric_errors == {}  # NotSupported is expected, not an error
    assert sample["gpu_power"] is None
    assert sample["gpu_util"] == 87.0
    assert sample["gpu_mem_used"] == 12 * GIB
    assert sample["gpu_temp"] == 71.0


def test_nvml_init_failure_falls_back_to_cpu_and_ram_with_a_message(fake_nvml):
    fake_nvml(init_error="Driver Not Loaded")
    monitor = SystemMonitor()
    assert not monitor.gpu_available
    assert monitor.gpu_message == NO_GPU_MESSAGE
    assert "Driver Not Loaded" in monitor.gpu_error
    sample = monitor.sample()
    assert all(sample[key] is None for key in SAMPLE_KEYS if key.startswith("gpu_"))
    assert_cpu_and_ram_present(sample)
    info = monitor.describe()
    assert info["gpu_available"] is False and info["gpus"] == []
    assert "Driver Not Loaded" in info["reason"]
    monitor.close()


def test_missing_nvml_bindings_fall_back_to_cpu_and_ram(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    monitor = SystemMonitor()
    assert not monitor.gpu_available
    assert monitor.gpu_message == NO_GPU_MESSAGE
    assert_cpu_and_ram_present(monitor.sample())


def test_unknown_uuid_falls_back_and_releases_nvml(fake_nvml):
    nvml = fake_nvml()
    monitor = SystemMonitor(uuid="GPU-not-there")
    assert not monitor.gpu_available
    assert "GPU-not-there" in monitor.gpu_error
    assert nvml.calls[-1] == "nvmlShutdown"


def test_describe_lists_driver_and_every_gpu(fake_nvml):
    fake_nvml()
    with SystemMonitor(uuid=UUID) as monitor:
        info = monitor.describe()
    assert info["gpu_available"] is True
    assert info["driver_version"] == "580.95.05"
    assert info["monitored_gpu"] == "Fake H100"
    assert [gpu["name"] for gpu in info["gpus"]] == ["Fake A100", "Fake H100"]
    assert info["gpus"][1]["uuid"] == UUID
    assert info["gpus"][1]["memory_total"] == 80 * GIB
    assert info["cpu_count"] >= 1 and info["ram_total"] > 0


def test_real_nvml_on_this_machine_never_raises():
    """Whatever this machine has (GPU or not), the monitor comes up and samples."""
    with SystemMonitor() as monitor:
        sample = monitor.sample()
        assert isinstance(monitor.gpu_message, str) and monitor.gpu_message
    assert_cpu_and_ram_present(sample)


def test_the_monitor_module_imports_neither_torch_nor_nvml_at_load_time():
    """The status bar polls this module before torch is loaded; only module-level imports count."""
    import iamnn_studio.engine.system as system

    tree = ast.parse(Path(system.__file__).read_text(encoding="utf-8"))
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    assert top_level.isdisjoint({"torch", "pynvml"}), top_level
