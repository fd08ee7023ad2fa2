"""Board and host descriptions: the hardware figures every cost and every plan rests on.

The partitioner, the cost model and the simulated board all price things in the
units of these files (MB/s with MB = 10**6 bytes, microseconds, MHz, device
primitives), so a figure that is silently wrong here makes every plan wrong in
the same direction. That is why loading is strict: a string where a number
belongs, an unknown key (usually a typo that would otherwise be ignored) or a
missing key is an error naming the file and the dotted field, in one line a
user can act on, with no traceback. Where each figure comes from is in
``docs/boards.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pydantic
import yaml
from annotated_types import Ge, Gt
from pydantic import ConfigDict, Strict, TypeAdapter

from hwpart.datafiles import data_dir
from hwpart.errors import BoardError, ConfigError

__all__ = [
    "Board",
    "BoardCpu",
    "BoardPower",
    "DevicePower",
    "DynamicPower",
    "HostPower",
    "Clocks",
    "ConfigPort",
    "DMASpec",
    "Host",
    "Link",
    "Resources",
    "SlotSpec",
    "boards_dir",
    "list_boards",
    "load_board",
    "load_host",
]

# Strict scalars: YAML happily turns `fast` or `"100"` into strings, and a lax
# validator would coerce "100" to 100 and hide a quoting mistake; strict ones
# refuse it. Strict floats still take YAML integers (``bandwidth_mb_s: 600``).
_Int = Annotated[int, Strict()]
_Count = Annotated[int, Strict(), Ge(0)]
_PosInt = Annotated[int, Strict(), Gt(0)]
_PosFloat = Annotated[float, Strict(), Gt(0)]
_NonNegFloat = Annotated[float, Strict(), Ge(0)]
_Str = Annotated[str, Strict()]

# Unknown keys are rejected (extra="forbid") because a misspelt optional key
# would otherwise fall back to its default without anyone noticing.
_SCHEMA = ConfigDict(extra="forbid")

PORTS = ("cpu", "gpu", "fpga")
_HOST_FILE = "host"
_FAMILY_PS = {"zynq-7000": "ps7", "zynq-ultrascale+": "ps8"}


@dataclass(frozen=True)
class Resources:
    """FPGA primitives, counted the way Vivado's utilization report counts them.

    BRAM is in 18 Kb halves so that hls4ml/Vivado estimates (which report
    BRAM_18K) compare without conversion; one 36 Kb block is two of them.
    """

    __pydantic_config__ = _SCHEMA

    lut: _Count
    ff: _Count
    dsp: _Count
    bram_18k: _Count
    uram: _Count = 0

    def fits(self, other: Resources) -> bool:
        """True when this requirement fits in ``other`` in every primitive.

        Component-wise on purpose: spare LUTs do not make up for missing DSPs.
        """
        return not self.over(other)

    def over(self, cap: Resources) -> dict[str, tuple[int, int]]:
        """The primitives where this exceeds ``cap``, as ``{field: (need, have)}``.

        Lets an error message say exactly what does not fit instead of "too big".
        """
        mine, theirs = self.as_dict(), cap.as_dict()
        return {k: (v, theirs[k]) for k, v in mine.items() if v > theirs[k]}

    def __add__(self, other: Resources) -> Resources:
        if not isinstance(other, Resources):
            return NotImplemented
        a, b = self.as_dict(), other.as_dict()
        return Resources(**{k: a[k] + b[k] for k in a})

    def scaled(self, k: float) -> Resources:
        """Multiply every primitive by ``k``, rounding up.

        Rounding up keeps a scaled requirement (a margin, a count of RMs) from
        ever under-counting and passing a fit check it should fail.
        """
        if k < 0:
            raise ValueError(f"scale factor must be >= 0, got {k}")
        return Resources(**{f: math.ceil(v * k) for f, v in self.as_dict().items()})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Link:
    """A data path priced as a fixed per-transfer latency plus bytes over bandwidth.

    Both terms matter: small activations are latency-bound (PYNQ's Python
    driver, a CUDA launch), large ones bandwidth-bound.
    """

    __pydantic_config__ = _SCHEMA

    bandwidth_mb_s: _PosFloat
    latency_us: _NonNegFloat

    def transfer_s(self, nbytes: int) -> float:
        """Seconds to move ``nbytes`` (MB = 10**6 bytes, as the datasheets count).

        Zero bytes costs nothing: no transfer is issued for an empty edge.
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if nbytes == 0:
            return 0.0
        return self.latency_us * 1e-6 + nbytes / (self.bandwidth_mb_s * 1e6)


@dataclass(frozen=True)
class Clocks:
    __pydantic_config__ = _SCHEMA

    pl_mhz: _PosFloat


@dataclass(frozen=True)
class DMASpec:
    """AXI DMA (PG021) on an HP port, per direction, as seen from PYNQ Python."""

    __pydantic_config__ = _SCHEMA

    bandwidth_mb_s: _PosFloat
    latency_us: _NonNegFloat
    data_width_bits: _PosInt

    @property
    def link(self) -> Link:
        return Link(self.bandwidth_mb_s, self.latency_us)


@dataclass(frozen=True)
class ConfigPort:
    """The port partial bitstreams go through; it sets the price of a PR swap."""

    __pydantic_config__ = _SCHEMA

    name: Literal["pcap", "icap"]
    throughput_mb_s: _PosFloat

    def load_s(self, nbytes: int) -> float:
        """Seconds to push ``nbytes`` of bitstream through this port."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        return nbytes / (self.throughput_mb_s * 1e6)


@dataclass(frozen=True)
class SlotSpec:
    """The reconfigurable partitions of the static shell, all the same size.

    Equal slots let any RM go into any slot, which the re-allocator relies on
    when it picks a free slot for a make-before-break move.
    """

    __pydantic_config__ = _SCHEMA

    count: _PosInt
    resources: Resources
    partial_bitstream_bytes: _PosInt

    @property
    def total(self) -> Resources:
        return self.resources.scaled(self.count)


@dataclass(frozen=True)
class DynamicPower:
    """Fabric power per primitive in use, watts, at the board's ``clocks.pl_mhz``.

    Applied to an RM's (or a layer's) resource estimate, it prices the FPGA in the
    energy objective; XPE-style figures, estimates until a board measures them.
    """

    __pydantic_config__ = _SCHEMA

    lut: _NonNegFloat
    ff: _NonNegFloat
    dsp: _NonNegFloat
    bram_18k: _NonNegFloat
    uram: _NonNegFloat = 0.0

    def watts(self, resources: Mapping[str, float]) -> float:
        return sum(float(resources.get(k, 0.0)) * getattr(self, k)
                   for k in ("lut", "ff", "dsp", "bram_18k", "uram"))


@dataclass(frozen=True)
class BoardPower:
    """What the board draws: at rest (PS, DDR, regulators; PL static apart), the PL's
    static power, and the fabric's dynamic power per primitive. ``source`` says where
    the figures come from, so every printed energy can name it."""

    __pydantic_config__ = _SCHEMA

    board_idle_w: _NonNegFloat
    pl_static_w: _NonNegFloat
    dynamic_w: DynamicPower
    source: _Str


@dataclass(frozen=True)
class BoardCpu:
    """The board's own Arm cores, so a plan for the board never prices the host's x86.

    ``macs_per_s`` is the effective rate of small layers through a Python framework on
    all cores, ``layer_overhead_us`` the fixed cost of one layer call, ``active_w``
    what busy cores add to ``power.board_idle_w``. Estimates until ``hwpart profile``
    runs on the board.
    """

    __pydantic_config__ = _SCHEMA

    model: _Str
    cores: _PosInt
    clock_mhz: _PosFloat
    macs_per_s: _PosFloat
    layer_overhead_us: _NonNegFloat
    active_w: _NonNegFloat
    source: _Str


@dataclass(frozen=True)
class Board:
    """One PYNQ board: device, fabric clock, data and configuration ports, slots."""

    __pydantic_config__ = _SCHEMA

    name: _Str
    description: _Str
    part: _Str
    family: Literal["zynq-7000", "zynq-ultrascale+"]
    ps: Literal["ps7", "ps8"]
    pynq_version: _Str
    resources: Resources
    clocks: Clocks
    dma: DMASpec
    config_port: ConfigPort
    slots: SlotSpec
    ddr_mb: _PosInt
    # Optional so boards described before the energy objective still load; the energy
    # objective and ``--cpu board`` say so when the section is missing.
    power: BoardPower | None = None
    cpu: BoardCpu | None = None
    # Where the description came from, for messages; not part of the YAML
    # (init=False keeps it out of the schema, so a `path:` key is rejected).
    path: Path | None = field(default=None, init=False, compare=False, repr=False)

    def swap_s(self) -> float:
        """Seconds for one PR swap of a slot: its partial over the config port."""
        return self.config_port.load_s(self.slots.partial_bitstream_bytes)


@dataclass(frozen=True)
class DevicePower:
    """A host device's declared draw: at idle and busy (total, so ``active_w >= idle_w``).

    Used only where no counter reads it (RAPL for the CPU, NVML for the GPU).
    """

    __pydantic_config__ = _SCHEMA

    idle_w: _NonNegFloat
    active_w: _NonNegFloat
    source: _Str


@dataclass(frozen=True)
class HostPower:
    __pydantic_config__ = _SCHEMA

    cpu: DevicePower
    gpu: DevicePower | None = None


@dataclass(frozen=True)
class Host:
    """The host's own links and memories; FPGA links come from the board."""

    __pydantic_config__ = _SCHEMA

    name: _Str
    links: dict[str, Link]
    cpu_memory_mb: _PosInt
    gpu_memory_mb: _Count
    power: HostPower | None = None
    path: Path | None = field(default=None, init=False, compare=False, repr=False)

    def link(self, a: str, b: str, board: Board | None = None) -> Link:
        """The link between two ports ('cpu', 'gpu', 'fpga'), in either order.

        There is no direct GPU<->FPGA path on these hosts (no peer-to-peer DMA
        to a PYNQ board), so that pair is staged through host memory: it moves
        at the slower hop's bandwidth and pays both hops' latencies.
        """
        for p in (a, b):
            if p not in PORTS:
                raise ValueError(f"unknown port {p!r}; ports are {', '.join(PORTS)}")
        if a == b:
            raise ValueError(f"no link from {a!r} to itself: same-device data does not move")
        pair = frozenset((a, b))
        if pair == frozenset(("cpu", "gpu")):
            return self.links["cpu-gpu"]
        if board is None:
            raise ValueError(f"the {a}-{b} link needs a board: its DMA sets the FPGA side")
        fpga = board.dma.link
        if pair == frozenset(("cpu", "fpga")):
            return fpga
        gpu = self.links["cpu-gpu"]
        return Link(
            bandwidth_mb_s=min(gpu.bandwidth_mb_s, fpga.bandwidth_mb_s),
            latency_us=gpu.latency_us + fpga.latency_us,
        )


# --------------------------------------------------------------------- loading


def boards_dir() -> Path:
    """Where board names are looked up: HWPART_BOARDS_DIR when set (tests and users
    point at their own folder without touching the shipped one), else the boards
    shipped with hwpart (:func:`hwpart.datafiles.data_dir`)."""
    env = os.environ.get("HWPART_BOARDS_DIR")
    if env:
        d = Path(env)
        if not d.is_dir():
            raise BoardError(f"HWPART_BOARDS_DIR={env} is not a folder")
        return d
    return data_dir("boards", BoardError)


def list_boards() -> list[str]:
    """Board names in :func:`boards_dir`, sorted; host.yaml is not a board. A folder
    with no board in it is an error: an empty list would print an empty table and
    hide a broken installation."""
    d = boards_dir()
    names = sorted(p.stem for p in d.glob("*.yaml") if p.stem != _HOST_FILE)
    if not names:
        raise BoardError(f"no board YAML in {d} (looked for *.yaml other than {_HOST_FILE}.yaml)")
    return names


def load_board(name_or_path: str | Path) -> Board:
    """Load and check one board, by name (in :func:`boards_dir`) or by file path."""
    path = _resolve(name_or_path, BoardError, kind="board")
    board = _validate(Board, _read_yaml(path, BoardError), path, BoardError)
    _check_board(board, path)
    object.__setattr__(board, "path", path)
    return board


def load_host(name_or_path: str | Path = _HOST_FILE) -> Host:
    """Load and check the host description (``boards/host.yaml`` by default)."""
    path = _resolve(name_or_path, ConfigError, kind="host")
    host = _validate(Host, _read_yaml(path, ConfigError), path, ConfigError)
    _check_host(host, path)
    object.__setattr__(host, "path", path)
    return host


def _looks_like_path(s: str) -> bool:
    return s.endswith((".yaml", ".yml")) or "/" in s or os.sep in s


def _resolve(name_or_path: str | Path, err: type[ConfigError], kind: str) -> Path:
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise err(f"{kind} file '{_show(path)}' not found")
        return path
    name = name_or_path
    path = boards_dir() / f"{name}.yaml"
    if kind == "board":
        if name == _HOST_FILE or not path.is_file():
            why = (f"{path.name} in {path.parent} describes the host, not a board"
                   if name == _HOST_FILE else f"no {path.name} in {path.parent}")
            raise err(f"unknown board '{name}': {why}; known boards: "
                      f"{', '.join(list_boards())} (or pass a path to a board YAML)")
    elif not path.is_file():
        raise err(
            f"unknown host description '{name}': no {_show(path)} (or pass a path to a host YAML)"
        )
    return path


def _show(path: Path) -> str:
    """The path as the user would type it: relative to the cwd when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path, err: type[ConfigError]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise err(f"{_show(path)}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise err(f"{_show(path)}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise err(f"{_show(path)}: expected a mapping of fields at top level, got {got}")
    return data


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _validate(cls: type, data: dict[str, Any], path: Path, err: type[ConfigError]) -> Any:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    try:
        return adapter.validate_python(data)
    except pydantic.ValidationError as e:
        problems = [_describe(cls, er) for er in e.errors()]
        raise err(f"{_show(path)}: " + "; ".join(problems)) from None


def _describe(root: type, er: Mapping[str, Any]) -> str:
    """One pydantic error as "field 'a.b': expected X, got Y"."""
    loc = tuple(er["loc"])
    dotted = ".".join(str(p) for p in loc)
    kind = er["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        allowed = _allowed_keys(root, loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown field '{dotted}'{hint}"
    expected = _expected(_annotation_at(root, loc))
    if kind == "missing":
        return f"field '{dotted}': missing (expected {expected})"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"field '{dotted}': {er['msg'].lower().replace('input ', '')}, got {er['input']!r}"
    return f"field '{dotted}': expected {expected}, got {_short(er.get('input'))}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _annotation_at(root: type, loc: tuple[Any, ...]) -> Any:
    """The declared type at a pydantic error location, for the "expected" text."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if get_origin(tp) in (Union, types.UnionType):  # an optional section: its mapping
            tp = next((a for a in get_args(tp) if dataclasses.is_dataclass(a)), tp)
        if dataclasses.is_dataclass(tp) and isinstance(part, str):
            hints = typing.get_type_hints(tp, include_extras=True)
            if part not in hints:
                return None
            tp = hints[part]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return tp


def _allowed_keys(root: type, loc: tuple[Any, ...]) -> list[str]:
    tp = _unwrap(_annotation_at(root, loc))
    if get_origin(tp) in (Union, types.UnionType):  # an optional section
        tp = next((a for a in get_args(tp) if dataclasses.is_dataclass(a)), tp)
    if dataclasses.is_dataclass(tp):
        return [f.name for f in dataclasses.fields(tp) if f.init]
    return []


def _expected(tp: Any) -> str:
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in get_args(tp))
    return "a valid value"


def _check_board(board: Board, path: Path) -> None:
    """Cross-field rules a per-field schema cannot express."""
    where = _show(path)
    if board.name != path.stem:
        raise BoardError(
            f"{where}: field 'name': '{board.name}' must equal the file name "
            f"'{path.stem}' (names are looked up by file)"
        )
    if _FAMILY_PS[board.family] != board.ps:
        raise BoardError(
            f"{where}: field 'ps': family '{board.family}' has processing system "
            f"'{_FAMILY_PS[board.family]}', got '{board.ps}'"
        )
    if board.dma.data_width_bits % 8:
        raise BoardError(
            f"{where}: field 'dma.data_width_bits': must be a whole number of bytes, "
            f"got {board.dma.data_width_bits}"
        )
    over = board.slots.total.over(board.resources)
    if over:
        parts = ", ".join(f"{k} {need} > {have}" for k, (need, have) in over.items())
        raise BoardError(
            f"{where}: field 'slots.resources': {board.slots.count} slots do not fit "
            f"the device ({parts})"
        )


def _check_host(host: Host, path: Path) -> None:
    where = _show(path)
    if host.name != path.stem:
        raise ConfigError(
            f"{where}: field 'name': '{host.name}' must equal the file name '{path.stem}'"
        )
    known = {"cpu-gpu"}
    for key in host.links:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown field 'links.{key}' (allowed: cpu-gpu; FPGA links "
                "come from the board's dma section)"
            )
    if "cpu-gpu" not in host.links:
        raise ConfigError(f"{where}: field 'links.cpu-gpu': missing (expected a mapping)")
    for dev in ("cpu", "gpu"):
        p = getattr(host.power, dev, None) if host.power else None
        if p is not None:
            _check_power(p.active_w, p.idle_w, where, f"power.{dev}.active_w", ConfigError)


def _check_power(active: float | None, idle: float, where: str, dotted: str,
                 err: type[ConfigError]) -> None:
    """A busy device draws at least its idle power: a smaller figure is a typo (often
    the increment written where the total belongs) and would make energy negative."""
    if active is not None and active < idle:
        raise err(f"{where}: field '{dotted}': must be >= idle_w ({idle:g} W), got {active:g}")
