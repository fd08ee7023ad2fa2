"""The FPGA's errors, shared by the shell driver on the board, the agent and the host.

They live on the board side so the agent can raise them and the host can raise
the same class again from the agent's reply (:data:`BY_NAME`): a DMA time-out
on a board across the network is the same ``DmaTimeout`` as on a local one.
"""

from __future__ import annotations

from hwpart.errors import DeviceError


class FpgaError(DeviceError):
    """An FPGA failure, naming the slot and the RM involved."""

    def __init__(self, message: str, slot: int | None = None, rm: str | None = None) -> None:
        where = f"fpga slot {slot}" if slot is not None else "fpga"
        super().__init__(f"{where}{f' (RM {rm})' if rm else ''}: {message}")
        self.slot, self.rm, self.detail = slot, rm, message


class DmaError(FpgaError):
    """The AXI DMA reported an error bit (DMASR)."""

    def __init__(self, message: str, slot: int | None = None, rm: str | None = None,
                 status: int = 0) -> None:
        super().__init__(message, slot, rm)
        self.status = status


class DmaTimeout(FpgaError):
    """A transfer did not complete in time (slot decoupled, route missing, hung RM)."""


class FpgaDown(FpgaError):
    """The device is down (failed, or its board agent stopped answering): nothing runs
    until it is restored."""


class BundleIntegrityError(FpgaError):
    """A bundle file's sha256 differs from the manifest, or the file is not listed:
    refused before download."""


class AgentError(FpgaError):
    """The board agent refused a request (bad request, unknown RM, frame too large...)."""


class AgentAuthError(AgentError):
    """The board agent refused our key (CURVE authentication)."""


BY_NAME: dict[str, type[FpgaError]] = {c.__name__: c for c in (
    FpgaError, DmaError, DmaTimeout, FpgaDown, BundleIntegrityError, AgentError)}
