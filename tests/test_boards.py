"""Board/host descriptions: the shipped files load and are sane, and every way a
user can get a file wrong ends in one actionable line naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwpart.boards import (
    Board,
    Host,
    Link,
    Resources,
    boards_dir,
    list_boards,
    load_board,
    load_host,
)
from hwpart.errors import BoardError, ConfigError, HwpartError

SHIPPED = ["kv260", "pynq-z2", "zcu104"]


def _raw(name: str) -> dict:
    return yaml.safe_load((boards_dir() / f"{name}.yaml").read_text())


def _write(tmp_path: Path, stem: str, data: dict | str) -> Path:
    path = tmp_path / f"{stem}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _error(exc: type[HwpartError], fn, *args) -> str:
    with pytest.raises(exc) as info:
        fn(*args)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert "Traceback" not in msg, msg
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, HwpartError)
    return msg


# ------------------------------------------------------------- shipped boards


def test_list_boards_excludes_host() -> None:
    assert list_boards() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_board_loads_and_is_sane(name: str) -> None:
    b = load_board(name)
    assert isinstance(b, Board)
    assert b.name == name and b.path == boards_dir() / f"{name}.yaml"
    assert b.slots.count >= 1
    # Every slot together fits the device, and leaves room for the static shell.
    assert b.slots.total.fits(b.resources)
    assert b.slots.total.lut < b.resources.lut
    assert b.resources.bram_18k % 2 == 0  # whole 36 Kb blocks
    assert b.clocks.pl_mhz == 100.0  # PYNQ's default fabric clock
    # Data path cannot beat its own bus: width x clock.
    ceiling = b.dma.data_width_bits / 8 * b.clocks.pl_mhz
    assert 0 < b.dma.bandwidth_mb_s <= ceiling
    # A PR swap costs milliseconds, not microseconds or seconds.
    assert 1e-3 < b.swap_s() < 1.0
    # Partial bitstreams well under the device's DDR.
    assert b.slots.partial_bitstream_bytes < b.ddr_mb * 1e6 / 10
    assert b.ps == {"zynq-7000": "ps7", "zynq-ultrascale+": "ps8"}[b.family]


def test_datasheet_figures() -> None:
    z2, kv, zcu = (load_board(n) for n in ("pynq-z2", "kv260", "zcu104"))
    assert z2.resources == Resources(lut=53200, ff=106400, dsp=220, bram_18k=280, uram=0)
    assert kv.resources == Resources(lut=117120, ff=234240, dsp=1248, bram_18k=288, uram=64)
    assert zcu.resources == Resources(lut=230400, ff=460800, dsp=1728, bram_18k=624, uram=96)
    assert z2.pynq_version == "3.0.1"  # PYNQ 4.0 dropped the Z1/Z2
    assert z2.ddr_mb == 512 and z2.part == "xc7z020clg400-1"
    assert z2.config_port.name == "pcap"


def test_load_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "myboard", {**_raw("pynq-z2"), "name": "myboard"})
    assert load_board(path).name == "myboard"
    assert load_board(str(path)).path == path


def test_boards_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "mine", {**_raw("kv260"), "name": "mine"})
    monkeypatch.setenv("HWPART_BOARDS_DIR", str(tmp_path))
    assert boards_dir() == tmp_path
    assert list_boards() == ["mine"]
    assert load_board("mine").resources.uram == 64


# ----------------------------------------------------------------- errors


def test_unknown_board_lists_known_names() -> None:
    msg = _error(BoardError, load_board, "xyz")
    assert msg == (
        f"unknown board 'xyz': no xyz.yaml in {boards_dir()}; known boards: kv260, pynq-z2, "
        "zcu104 (or pass a path to a board YAML)"
    )


def test_missing_or_empty_boards_folder_is_an_error(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Never an empty list (and so an empty `hwpart boards` table) for a broken setup."""
    monkeypatch.setenv("HWPART_BOARDS_DIR", str(tmp_path / "nope"))
    assert "HWPART_BOARDS_DIR=" in _error(BoardError, list_boards)
    assert "nope" in _error(BoardError, load_board, "pynq-z2")
    _write(tmp_path, "host", {"name": "host"})
    monkeypatch.setenv("HWPART_BOARDS_DIR", str(tmp_path))
    assert _error(BoardError, list_boards) == (
        f"no board YAML in {tmp_path} (looked for *.yaml other than host.yaml)")


def test_host_is_not_a_board() -> None:
    assert "unknown board 'host'" in _error(BoardError, load_board, "host")


def test_missing_file(tmp_path: Path) -> None:
    msg = _error(BoardError, load_board, tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "not found" in msg


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad", "name: bad\npart: [xc7z020,\n  dma: {\n")
    msg = _error(BoardError, load_board, path)
    assert "bad.yaml" in msg and "invalid YAML at line" in msg


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    msg = _error(BoardError, load_board, _write(tmp_path, "bad", "- 1\n- 2\n"))
    assert "bad.yaml" in msg and "mapping" in msg


def test_wrong_type_names_field(tmp_path: Path) -> None:
    raw = {**_raw("pynq-z2"), "name": "bad"}
    raw["dma"] = {**raw["dma"], "bandwidth_mb_s": "fast"}
    msg = _error(BoardError, load_board, _write(tmp_path, "bad", raw))
    assert msg.endswith("bad.yaml: field 'dma.bandwidth_mb_s': expected a number, got 'fast'")


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        (("resources", "lut"), "53200", "expected an integer, got '53200'"),
        (("resources", "dsp"), 2.5, "expected an integer, got 2.5"),
        (("slots", "count"), True, "expected an integer, got True"),
        (("pynq_version",), 3.1, "expected a string, got 3.1"),
        (("family",), "virtex", "expected one of 'zynq-7000', 'zynq-ultrascale+'"),
    ],
)
def test_strict_types(tmp_path: Path, where: tuple[str, ...], value, expected: str) -> None:
    raw = {**_raw("pynq-z2"), "name": "bad"}
    node = raw
    for key in where[:-1]:
        node[key] = dict(node[key])
        node = node[key]
    node[where[-1]] = value
    msg = _error(BoardError, load_board, _write(tmp_path, "bad", raw))
    assert f"field '{'.'.join(where)}': {expected}" in msg


def test_missing_key(tmp_path: Path) -> None:
    raw = {**_raw("pynq-z2"), "name": "bad"}
    raw["dma"] = {k: v for k, v in raw["dma"].items() if k != "latency_us"}
    del raw["ddr_mb"]
    msg = _error(BoardError, load_board, _write(tmp_path, "bad", raw))
    assert "field 'dma.latency_us': missing (expected a number)" in msg
    assert "field 'ddr_mb': missing (expected an integer)" in msg


def test_extra_key(tmp_path: Path) -> None:
    raw = {**_raw("pynq-z2"), "name": "bad"}
    raw["dma"] = {**raw["dma"], "bandwith_mb_s": 10.0}
    msg = _error(BoardError, load_board, _write(tmp_path, "bad", raw))
    assert "unknown field 'dma.bandwith_mb_s'" in msg
    assert "allowed: bandwidth_mb_s, latency_us, data_width_bits" in msg


def test_path_key_is_not_part_of_the_schema(tmp_path: Path) -> None:
    raw = {**_raw("pynq-z2"), "name": "bad", "path": "/elsewhere.yaml"}
    assert "unknown field 'path'" in _error(BoardError, load_board, _write(tmp_path, "bad", raw))


def test_name_must_match_stem(tmp_path: Path) -> None:
    msg = _error(BoardError, load_board, _write(tmp_path, "other", _raw("pynq-z2")))
    assert "other.yaml: field 'name'" in msg and "'pynq-z2'" in msg


def test_non_positive_figures(tmp_path: Path) -> None:
    raw = {**_raw("pynq-z2"), "name": "bad"}
    raw["clocks"] = {"pl_mhz": 0}
    raw["slots"] = {**raw["slots"], "count": 0}
    msg = _error(BoardError, load_board, _write(tmp_path, "bad", raw))
    assert "field 'clocks.pl_mhz': should be greater than 0" in msg
    assert "field 'slots.count': should be greater than 0" in msg


def test_slots_must_fit_device(tmp_path: Path) -> None:
    raw = {**_raw("pynq-z2"), "name": "bad"}
    raw["slots"] = {**raw["slots"], "count": 4}
    msg = _error(BoardError, load_board, _write(tmp_path, "bad", raw))
    assert "field 'slots.resources': 4 slots do not fit the device" in msg
    assert "lut 63840 > 53200" in msg


def test_family_and_ps_agree(tmp_path: Path) -> None:
    raw = {**_raw("pynq-z2"), "name": "bad", "ps": "ps8"}
    assert "field 'ps'" in _error(BoardError, load_board, _write(tmp_path, "bad", raw))


# ------------------------------------------------------------------- host


def test_host_loads() -> None:
    host = load_host()
    assert isinstance(host, Host)
    assert host.links["cpu-gpu"].bandwidth_mb_s > 0
    assert host.cpu_memory_mb > 0


def test_host_errors_are_config_errors(tmp_path: Path) -> None:
    bad = {
        "name": "h",
        "links": {"cpu-gpu": {"bandwidth_mb_s": "x", "latency_us": 1}},
        "cpu_memory_mb": 1,
        "gpu_memory_mb": 0,
    }
    msg = _error(ConfigError, load_host, _write(tmp_path, "h", bad))
    assert "field 'links.cpu-gpu.bandwidth_mb_s': expected a number, got 'x'" in msg
    bad = {
        "name": "h",
        "links": {"cpu-fpga": {"bandwidth_mb_s": 1, "latency_us": 1}},
        "cpu_memory_mb": 1,
        "gpu_memory_mb": 0,
    }
    assert "unknown field 'links.cpu-fpga'" in _error(
        ConfigError, load_host, _write(tmp_path, "h", bad)
    )
    assert "unknown host description" in _error(ConfigError, load_host, "nohost")


def test_link_composition() -> None:
    host, board = load_host(), load_board("pynq-z2")
    cpu_gpu, dma = host.links["cpu-gpu"], board.dma
    assert host.link("cpu", "gpu") == host.link("gpu", "cpu") == cpu_gpu
    assert host.link("fpga", "cpu", board) == Link(dma.bandwidth_mb_s, dma.latency_us)
    staged = host.link("gpu", "fpga", board)
    assert staged == host.link("fpga", "gpu", board)
    assert staged.bandwidth_mb_s == min(cpu_gpu.bandwidth_mb_s, dma.bandwidth_mb_s)
    assert staged.latency_us == pytest.approx(cpu_gpu.latency_us + dma.latency_us)
    with pytest.raises(ValueError):
        host.link("gpu", "gpu")
    with pytest.raises(ValueError):
        host.link("cpu", "fpga")  # needs a board
    with pytest.raises(ValueError):
        host.link("cpu", "tpu")


def test_link_transfer_time() -> None:
    link = Link(bandwidth_mb_s=100.0, latency_us=10.0)
    assert link.transfer_s(0) == 0.0
    assert link.transfer_s(1_000_000) == pytest.approx(10e-6 + 0.01)
    with pytest.raises(ValueError):
        link.transfer_s(-1)


# -------------------------------------------------------------- resources


def test_resources_arithmetic() -> None:
    a = Resources(lut=10, ff=20, dsp=1, bram_18k=2)
    b = Resources(lut=5, ff=5, dsp=5, bram_18k=0, uram=1)
    assert (a + b).as_dict() == {"lut": 15, "ff": 25, "dsp": 6, "bram_18k": 2, "uram": 1}
    assert a.scaled(2) == Resources(20, 40, 2, 4, 0)
    assert a.scaled(1.05).lut == 11  # rounds up
    assert a.fits(a) and not a.fits(b)
    assert a.over(b) == {"lut": (10, 5), "ff": (20, 5), "bram_18k": (2, 0)}
    assert b.over(a) == {"dsp": (5, 1), "uram": (1, 0)}
