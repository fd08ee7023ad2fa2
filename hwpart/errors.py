"""Errors a user can act on.

Every failure caused by input (a file, a model, a shape, a device) is raised as a
``HwpartError`` subclass whose message names the file/field/layer at fault and
says what to do. The CLI prints that one line and exits non-zero; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class HwpartError(Exception):
    """Base of all user-facing errors: ``str(err)`` is the whole message."""


class ConfigError(HwpartError):
    """A YAML/JSON file (board, host, manifest, plan, cost table) is malformed."""


class BoardError(ConfigError):
    """Unknown board name or an invalid board description."""


class ModelError(HwpartError):
    """The model spec cannot be loaded, traced, or run at the given input shape."""


class PlanError(HwpartError):
    """No feasible plan, or a plan that does not fit the graph/devices."""


class DeviceError(HwpartError):
    """A device failed to load or run a stage; names the stage and device."""
