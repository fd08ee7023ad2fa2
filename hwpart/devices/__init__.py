"""Device Abstraction Layer: the protocol, the registry and the built-in kinds.

New kinds (the FPGA) plug in with ``register_device("fpga", FpgaDevice)``; plans
name units (``cpu``, ``gpu``, ``fpga0``) whose kind is the name without the slot.
"""

from __future__ import annotations

from hwpart.devices.base import (
    METRIC_KEYS,
    Device,
    LoadedStage,
    Metrics,
    available_devices,
    get_device,
    merge_outputs,
    register_device,
    registered_kinds,
    unit_kind,
)
from hwpart.devices.cpu import CpuDevice, Rapl
from hwpart.devices.gpu import GpuDevice

register_device("cpu", CpuDevice, replace=True)
register_device("gpu", GpuDevice, replace=True)

__all__ = [
    "METRIC_KEYS", "CpuDevice", "Device", "GpuDevice", "LoadedStage", "Metrics", "Rapl",
    "available_devices", "get_device", "merge_outputs", "register_device",
    "registered_kinds", "unit_kind",
]
