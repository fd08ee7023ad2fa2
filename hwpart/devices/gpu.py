"""A CUDA GPU as a device: torch CUDA, one stream per stage, pinned transfers, NVML metrics.

Values cross stage boundaries in host memory (see ``devices.base``), so a GPU
stage copies its inputs up and its outputs down on its own stream:

* inputs go through a pinned staging buffer per input name (reused: the stage
  synchronizes its stream before returning, so the buffer is free again), which
  makes the host-to-device copy a real asynchronous DMA instead of a pageable one;
* outputs land in freshly allocated pinned tensors. torch's caching host
  allocator recycles those blocks once the downstream stage drops them, so this
  costs no ``cudaHostAlloc`` per batch and never rewrites a buffer still in use.

The GPU is offered only with CUDA *and* NVML (nvidia-ml-py): the monitor and the
re-allocator need its utilization, and a device that runs but cannot be watched
would be a blind spot. Without either, ``available()`` says which is missing.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import torch

from hwpart.devices.base import METRIC_KEYS, LoadedStage, Metrics, merge_outputs
from hwpart.graph import LayerGraph
from hwpart.stages import Stage


def _map_tensors(obj: Any, fn) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


class GpuDevice:
    """CUDA device ``index`` (as torch numbers them, i.e. after CUDA_VISIBLE_DEVICES)."""

    kind = "gpu"

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.name = f"gpu:{index}"
        self._nvml: Any = None
        self._nvml_handle: Any = None
        self._energy0: float | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ probing

    def available(self) -> tuple[bool, str]:
        if not torch.cuda.is_available():
            if torch.version.cuda is None:
                return False, f"torch {torch.__version__} is a build without CUDA"
            return False, "torch has CUDA but sees no device (no driver, or CUDA_VISIBLE_DEVICES)"
        count = torch.cuda.device_count()
        if self.index >= count:
            return False, f"no CUDA device {self.index} ({count} visible)"
        try:
            self._handle()
        except ImportError:
            return False, "nvidia-ml-py is not installed (pip install 'hwpart[gpu]')"
        except Exception as exc:  # pynvml.NVMLError_* (library or driver missing)
            return False, f"NVML unavailable: {type(exc).__name__}: {exc}"
        props = torch.cuda.get_device_properties(self.index)
        return True, (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, "
                      f"CUDA {torch.version.cuda}")

    def _handle(self) -> Any:
        with self._lock:
            if self._nvml_handle is None:
                import pynvml  # the module nvidia-ml-py installs

                pynvml.nvmlInit()
                try:  # torch maps its index to NVML's (CUDA_VISIBLE_DEVICES, UUIDs)
                    nvml_index = torch.cuda._get_nvml_device_index(self.index)
                except Exception:
                    nvml_index = self.index
                self._nvml = pynvml
                self._nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index)
            return self._nvml_handle

    def capabilities(self, lg: LayerGraph) -> set[str]:
        return set(lg.compute_nodes) if self.available()[0] else set()

    # ------------------------------------------------------------------ running

    def load(self, stage: Stage) -> LoadedStage:
        dev = torch.device("cuda", self.index)
        module = copy.deepcopy(stage.module).to(dev).eval()  # the CPU copy stays for re-routing
        stream = torch.cuda.Stream(device=dev)
        torch.cuda.synchronize(dev)  # weights are resident before the first run
        return LoadedStage(stage, self.name,
                           {"module": module, "stream": stream, "dev": dev, "staging": {}})

    def run(self, handle: LoadedStage, env: dict[str, Any]) -> dict[str, Any]:
        st, stage = handle.state, handle.stage
        stream: torch.cuda.Stream = st["stream"]
        with torch.inference_mode(), torch.cuda.device(st["dev"]), torch.cuda.stream(stream):
            args = [self._up(st, name, env[name]) for name in stage.inputs]
            out = st["module"](*args)
            host = _map_tensors(out, self._down)
            stream.synchronize()
        return merge_outputs(stage, env, host)

    @staticmethod
    def _up(st: dict[str, Any], name: str, t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.is_cuda:
            return t
        if not t.is_pinned():
            buf = st["staging"].get(name)
            if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
                buf = st["staging"][name] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            buf.copy_(t)
            t = buf
        return t.to(st["dev"], non_blocking=True)

    @staticmethod
    def _down(t: torch.Tensor) -> torch.Tensor:
        if not t.is_cuda:
            return t
        out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        out.copy_(t, non_blocking=True)
        return out

    def unload(self, handle: LoadedStage) -> None:
        handle.state.clear()  # drops the module copy; the caching allocator keeps the memory

    # ------------------------------------------------------------------ metrics

    def metrics(self) -> Metrics:
        out: Metrics = dict.fromkeys(METRIC_KEYS)
        try:
            h = self._handle()
        except Exception:
            return out
        nv = self._nvml
        for key, read in (
            ("util", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu / 100.0),
            ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),  # mW
            ("energy_j", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0),  # mJ
            ("mem_used_b", lambda: float(nv.nvmlDeviceGetMemoryInfo(h).used)),
            ("mem_total_b", lambda: float(nv.nvmlDeviceGetMemoryInfo(h).total)),
        ):
            try:
                out[key] = float(read())
            except Exception:  # NVMLError_NotSupported on some boards: n/a, not 0
                out[key] = None
        if out["energy_j"] is not None:  # report energy since this device was first read
            if self._energy0 is None:
                self._energy0 = out["energy_j"]
            out["energy_j"] -= self._energy0
        return out
