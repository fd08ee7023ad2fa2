"""The suite says plainly when its FPGA half did not run."""

from __future__ import annotations

import suite_summary


class _Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_sep(self, sep: str, text: str, **markup: object) -> None:
        self.lines.append(text)


def test_a_missing_sim_extra_is_reported(monkeypatch):
    monkeypatch.setattr(suite_summary, "FPGA_PACKAGES", ("pynq", "hwpart_no_such_pkg.sub"))
    monkeypatch.setattr(suite_summary, "FPGA_TOOLS", ("hwpart-no-such-tool",))
    rep = _Reporter()
    suite_summary.report(rep)
    assert len(rep.lines) == 1 and rep.lines[0].startswith("FPGA HALF SKIPPED")
    assert "hwpart_no_such_pkg.sub, hwpart-no-such-tool not installed" in rep.lines[0]


def test_nothing_is_said_when_everything_is_there(monkeypatch):
    monkeypatch.setattr(suite_summary, "FPGA_PACKAGES", ("pytest",))
    monkeypatch.setattr(suite_summary, "FPGA_TOOLS", ())
    rep = _Reporter()
    suite_summary.report(rep)
    assert rep.lines == []
