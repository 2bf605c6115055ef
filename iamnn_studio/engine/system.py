"""GPU, CPU and RAM statistics for the status panel and `iamnn-studio info`.

GPU figures come from NVML (distribution `nvidia-ml-py`, import name `pynvml`); CPU and RAM always
come from psutil. Meant to be polled about once a second. NVML is optional: when it cannot be
loaded or finds no GPU, the monitor says so in `gpu_message` and reports CPU and RAM only. A metric
that the GPU does not support (NVMLError_NotSupported, common for power on some boards) is None
in the sample, and the other metrics still come through.

No Qt here, and no torch at import time: `cuda_device_uuid` imports torch only when it is called.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any, Callable

import psutil

NO_GPU_MESSAGE = "No NVIDIA GPU found: showing CPU and RAM"

SAMPLE_KEYS = (
    "time",
    "gpu_util",
    "gpu_mem_used",
    "gpu_mem_total",
    "gpu_temp",
    "gpu_power",
    "cpu_util",
    "ram_used",
    "ram_total",
)


def cuda_device_uuid(index: int = 0) -> str:
    """The NVML UUID of CUDA device `index`, for `SystemMonitor(uuid=...)`.

    CUDA and NVML may number GPUs differently (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER), so the
    engine's device is matched by UUID, never by index.
    """
    import torch  # deferred: the status bar must not pay for importing torch

    return "GPU-" + str(torch.cuda.get_device_properties(index).uuid)


def _text(value: Any) -> str:
    """NVML strings arrive as str from nvidia-ml-py, as bytes from older bindings."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class SystemMonitor:
    """Samples one GPU through NVML (when there is one) and the CPU and RAM through psutil.

    `uuid`: the NVML UUID of the GPU to watch (see `cuda_device_uuid`); without it, NVML's first
    GPU. Call `close()` when done (or use the monitor as a context manager).
    """

    def __init__(self, uuid: str | None = None) -> None:
        self.gpu_available = False
        self.gpu_message = NO_GPU_MESSAGE
        self.gpu_error: str | None = None  # why there is no GPU, in NVML's words
        self.gpu_name: str | None = None
        self.metric_errors: dict[str, str] = {}  # metric -> last NVML error other than NotSupported
        self._nvml: ModuleType | None = None
        self._handle: Any = None
        self._not_supported: tuple[type[BaseException], ...] = ()
        psutil.cpu_percent(interval=None)  # the first call only starts psutil's measuring window
        self._open_nvml(uuid)

    def _open_nvml(self, uuid: str | None) -> None:
        try:
            import pynvml
        except ImportError as error:
            self.gpu_error = f"NVML bindings not installed ({error})"
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            self.gpu_error = f"NVML unavailable: {_text(error)}"
            return
        try:
            if uuid:
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.gpu_name = _text(pynvml.nvmlDeviceGetName(self._handle))
        except pynvml.NVMLError as error:
            which = f"GPU {uuid}" if uuid else "GPU 0"
            self.gpu_error = f"NVML cannot open {which}: {_text(error)}"
            self._handle = None
            _shutdown_quietly(pynvml)
            return
        self._nvml = pynvml
        not_supported = getattr(pynvml, "NVMLError_NotSupported", None)
        self._not_supported = (not_supported,) if not_supported else ()
        self.gpu_available = True
        self.gpu_message = self.gpu_name

    def _read(self, metric: str, read: Callable[[], Any]) -> Any:
        """One NVML reading; None when the GPU does not support it or NVML fails on it."""
        nvml = self._nvml
        try:
            return read()
        except self._not_supported:
            return None
        except nvml.NVMLError as error:  # e.g. GPU lost: keep the other metrics flowing
            self.metric_errors[metric] = _text(error)
            return None

    def sample(self) -> dict[str, Any]:
        """One reading of every metric (keys in SAMPLE_KEYS; GPU values None without a GPU).

        Units: time in seconds since the epoch, utilisation in %, memory in bytes, temperature in
        degrees C, power in W. `ram_used` is total minus available (what `free` calls used,
        caches not counted).
        """
        ram = psutil.virtual_memory()
        out: dict[str, Any] = {
            "time": time.time(),
            "gpu_util": None,
            "gpu_mem_used": None,
            "gpu_mem_total": None,
            "gpu_temp": None,
            "gpu_power": None,
            "cpu_util": psutil.cpu_percent(interval=None),
            "ram_used": ram.total - ram.available,
            "ram_total": ram.total,
        }
        nvml, handle = self._nvml, self._handle
        if nvml is None:
            return out
        util = self._read("gpu_util", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        memory = self._read("gpu_mem", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        temp = self._read(
            "gpu_temp", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        )
        milliwatts = self._read("gpu_power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        out["gpu_util"] = None if util is None else float(util.gpu)
        if memory is not None:
            out["gpu_mem_used"] = int(memory.used)
            out["gpu_mem_total"] = int(memory.total)
        out["gpu_temp"] = None if temp is None else float(temp)
        out["gpu_power"] = None if milliwatts is None else milliwatts / 1000.0
        return out

    def describe(self) -> dict[str, Any]:
        """What `iamnn-studio info` prints: the NVML driver and GPUs, or why there are none."""
        info: dict[str, Any] = {
            "gpu_available": self.gpu_available,
            "gpu_message": self.gpu_message,
            "reason": self.gpu_error,
            "driver_version": None,
            "gpus": [],
            "monitored_gpu": self.gpu_name,
            "cpu_count": psutil.cpu_count(logical=True),
            "ram_total": psutil.virtual_memory().total,
        }
        nvml = self._nvml
        if nvml is None:
            return info
        try:
            info["driver_version"] = _text(nvml.nvmlSystemGetDriverVersion())
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                memory = self._read("gpu_mem", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
                info["gpus"].append(
                    {
                        "index": index,
                        "name": _text(nvml.nvmlDeviceGetName(handle)),
                        "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
                        "memory_total": None if memory is None else int(memory.total),
                    }
                )
        except nvml.NVMLError as error:
            info["reason"] = f"NVML query failed: {_text(error)}"
        return info

    def close(self) -> None:
        """Release NVML. Safe to call twice."""
        if self._nvml is not None:
            _shutdown_quietly(self._nvml)
        self._nvml = None
        self._handle = None

    def __enter__(self) -> SystemMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _shutdown_quietly(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError:
        pass
