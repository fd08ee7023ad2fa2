"""NPM step 1, analyse (hwpart.npm.analyse): sustained departures, not spikes, on synthetic snapshots.

Each test names the part of the design it guards; the snapshots are the monitor's
own dataclasses, with cumulative counters as the monitor reports them.
"""

from __future__ import annotations

import random

import pytest

from hwpart.monitor import LatencySummary, Snapshot, StageSnapshot
from hwpart.npm.analyse import AnalyseConfig, Analyser
from hwpart.partition import manual_plan

DT = 0.1  # the monitor's interval
PRED = (1e-4, 2e-4, 1e-4)  # predicted service per sample, per stage
DEVICES = ("cpu", "fpga", "gpu")
CAP = 8
EMPTY = LatencySummary(0, None, None, None, None)


def plan3():
    plan = manual_plan("m", (4,), [("cpu", ["a"]), ("fpga0", ["b"]), ("gpu", ["c"])], batch=8)
    for st, t in zip(plan.stages, PRED, strict=True):
        st.predicted_s = t
    return plan


class Synth:
    """A three-stage pipeline's monitor, advanced one interval at a time."""

    def __init__(self) -> None:
        self.t = 0.0
        self.seq = 0
        self.samples = [0, 0, 0]
        self.service = [0.0, 0.0, 0.0]
        self.devices = list(DEVICES)

    def step(self, ratios=(1.0, 1.0, 1.0), rate: float = 1000.0, rates=None,
             queues=(None, 0, 0), errors=None) -> Snapshot:
        """``ratios``: measured/predicted service this interval; ``rate``: samples/s through
        every stage (``rates`` per stage); ``queues``: each stage's input queue depth now."""
        self.t += DT
        stages = []
        for i in range(3):
            n = int(round((rates[i] if rates else rate) * DT))
            serv = n * PRED[i] * ratios[i]
            self.samples[i] += n
            self.service[i] += serv
            s = self.samples[i]
            stages.append(StageSnapshot(
                name=f"stage{i}", unit=("cpu", "fpga0", "gpu")[i], device=self.devices[i],
                batches=s // 8, samples=s, throughput_sps=n / DT, busy=min(1.0, serv / DT),
                queue_depth=queues[i], queue_capacity=None if i == 0 else CAP,
                queue_high_water=None, latency=EMPTY, latency_total=EMPTY,
                service_per_sample_s=self.service[i] / s if s else None,
                service_modeled=i == 1))
        snap = Snapshot(seq=self.seq, t_s=self.t, interval_s=DT, samples=self.samples[2],
                        batches=0, throughput_sps=None, throughput_total_sps=None,
                        end_to_end=EMPTY, end_to_end_total=EMPTY, stages=stages, devices={},
                        device_errors=dict(errors or {}))
        self.seq += 1
        return snap


def steady(an: Analyser, syn: Synth, seconds: float = 2.0, **kw) -> list:
    out = []
    for _ in range(round(seconds / DT)):
        out += an.update(syn.step(**kw))
    return out


def run_until_found(an, syn, limit_s, **kw):
    t0 = syn.t
    while syn.t - t0 < limit_s - 1e-9:
        found = an.update(syn.step(**kw))
        if found:
            return found
    return []


# ------------------------------------------------------------------------ detection


@pytest.mark.parametrize("phase", [0.0, 0.5, 0.9])  # where in an interval the step falls
@pytest.mark.parametrize("throughput_falls", [False, True])
def test_a_3x_slowdown_is_found_within_half_a_second(phase, throughput_falls):
    """Guards the hold counting from the first departing interval: counting from when
    the sample-weighted window crossed `enter` instead takes up to 0.6 s here."""
    an, syn = Analyser(plan3()), Synth()
    assert steady(an, syn) == []
    t_step = syn.t + phase * DT
    # the interval the step falls in: (1 - phase) of its time at 3x
    mixed = phase * 1.0 + (1 - phase) * 3.0
    rate = 1000 / 3 if throughput_falls else 1000
    found = an.update(syn.step(ratios=(1, mixed, 1), rate=(1000 * phase + rate * (1 - phase))))
    found += run_until_found(an, syn, 1.0, ratios=(1, 3, 1), rate=rate,
                             queues=(None, CAP, 0))
    over = [f for f in found if f.kind == "overloaded"]
    assert [f.stage for f in over] == ["stage1"], found
    f = over[0]
    assert f.device == "fpga" and f.signal == "service"
    assert f.t_s - t_step <= 0.5 + 1e-9, f"found {f.t_s - t_step:.2f} s after the step"
    assert f.departure >= 1.5  # the window's figure when found: it may still hold a 1x part
    assert f.ratio == pytest.approx(f.departure * f.baseline)
    assert f.baseline == pytest.approx(1.0, rel=0.02) and f.predicted_s == PRED[1]
    assert f.since_s <= t_step + DT and f.window_s == pytest.approx(0.3) and f.samples > 0
    assert [a.key for a in an.active if a.signal == "service"] == [f.key]
    steady(an, syn, 0.5, ratios=(1, 3, 1), rate=rate, queues=(None, CAP, 0))
    assert an.departure("stage1") == pytest.approx(3.0, rel=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_unchanged_load_finds_nothing_over_30_s(seed):
    """±30% per interval on every stage's service and on the rate, queues anywhere: 300
    intervals, no finding. Guards the sustained rule (each interval of the hold must
    depart by `exit`) and the enter threshold on the window."""
    rng = random.Random(seed)
    an, syn = Analyser(plan3()), Synth()
    found = []
    for _ in range(300):
        found += an.update(syn.step(
            ratios=tuple(rng.uniform(0.7, 1.3) for _ in range(3)),
            rate=1000 * rng.uniform(0.7, 1.3),
            queues=(None, rng.randint(0, CAP), rng.randint(0, CAP))))
    assert found == [] and an.active == []


@pytest.mark.parametrize("spike", [10.0, 0.05])
def test_a_one_interval_spike_is_not_enough(spike):
    """Guards the hold: one 10x interval keeps a 0.3 s window above 1.5 for 0.3 s, so the
    window alone (hold dropped) would report it."""
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn)
    found = an.update(syn.step(ratios=(1, spike, 1)))
    found += steady(an, syn, 1.0)
    assert found == [] and an.active == []


def test_recovery_clears_and_reentry_needs_enter_again():
    """Guards hysteresis: after a finding, 1.3x (between exit and enter) keeps it active;
    back at 1.0 it clears; 1.3x then finds nothing; 3x finds it again."""
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn)
    assert [f.kind for f in run_until_found(an, syn, 1.0, ratios=(1, 3, 1))] == ["overloaded"]
    assert steady(an, syn, 2.0, ratios=(1, 1.3, 1)) == []
    assert [f.stage for f in an.active] == ["stage1"], "1.3x is above exit: still overloaded"
    cleared = []
    for _ in range(10):
        an.update(syn.step())
        cleared += an.last_cleared
    assert [f.stage for f in cleared] == ["stage1"] and an.active == []
    assert steady(an, syn, 3.0, ratios=(1, 1.3, 1)) == [], "re-entry needs `enter`, not `exit`"
    steady(an, syn, 2.0)
    again = run_until_found(an, syn, 1.0, ratios=(1, 3, 1))
    assert [(f.stage, f.kind) for f in again] == [("stage1", "overloaded")]


def test_a_load_hovering_around_enter_gives_one_finding_not_a_flicker():
    """Guards hysteresis the other way: a clear at `enter` instead of `exit` flickers."""
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn)
    found = []
    for k in range(100):  # 10 s alternating 1.3x and 1.8x every 0.5 s
        found += an.update(syn.step(ratios=(1, 1.8 if (k // 5) % 2 == 0 else 1.3, 1)))
    assert [(f.stage, f.kind) for f in found] == [("stage1", "overloaded")]


def test_a_long_slowdown_stays_found():
    """Guards the baseline freeze: a baseline that kept learning would take the slowdown
    for the new normal (tau 10 s) and clear it."""
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn)
    assert run_until_found(an, syn, 1.0, ratios=(1, 3, 1))
    cleared = []
    for _ in range(300):
        an.update(syn.step(ratios=(1, 3, 1)))
        cleared += an.last_cleared
    assert cleared == [] and [f.stage for f in an.active] == ["stage1"]
    assert an.departure("stage1") == pytest.approx(3.0, rel=0.05)


def test_a_faster_device_is_underused():
    """Contention ends (or a device returns): the stage runs at a third of its baseline."""
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn, ratios=(3, 1, 1))
    found = run_until_found(an, syn, 1.0, ratios=(1, 1, 1))
    assert [(f.stage, f.kind, f.signal) for f in found] == [("stage0", "underused", "service")]
    assert found[0].departure == pytest.approx(1 / 3, rel=0.25)


# ------------------------------------------------------------------------ input-bound


def test_input_rate_drop_reads_as_input_bound_everywhere():
    """The source slows to a third: every stage is idle, none is slow."""
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn, queues=(None, 1, 1))
    found = steady(an, syn, 1.0, rate=300)
    assert sorted((f.stage, f.kind, f.signal) for f in found) == [
        ("stage0", "underused", "busy"), ("stage1", "underused", "busy"),
        ("stage2", "underused", "busy")]
    f = next(f for f in found if f.stage == "stage1")
    assert f.ratio == pytest.approx(0.3 * f.baseline, rel=0.05)
    # the rate comes back: they clear
    cleared = []
    for _ in range(10):
        an.update(syn.step(queues=(None, 1, 1)))
        cleared += an.last_cleared
    assert len(cleared) == 3 and an.active == []


def test_a_stage_blocked_by_its_consumer_is_not_idle():
    """Stage 1 slows 3x: stage 2 starves (input-bound), stage 0 waits on a full queue
    (not idle: its consumer is slow), stage 1 is overloaded."""
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn, queues=(None, 1, 1))
    found = steady(an, syn, 1.0, ratios=(1, 3, 1), rate=333, queues=(None, CAP, 0))
    assert sorted((f.stage, f.kind) for f in found) == [("stage1", "overloaded"),
                                                        ("stage2", "underused")]


# ------------------------------------------------------------------------ failures


def test_a_stalled_stage_with_queued_items_is_failed_and_clears_on_progress():
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn, queues=(None, 1, 1))
    found = []
    t0 = syn.t
    for _ in range(15):  # stage 1 stops; stage 0 fills its queue, stage 2 drains
        found += [f for f in an.update(syn.step(rates=(1000, 0, 0), queues=(None, CAP, 0)))
                  if f.kind == "failed"]  # (stage 2 starves: input-bound, found too)
        if found:
            break
    assert [(f.stage, f.kind, f.signal) for f in found] == [("stage1", "failed", "stall")]
    assert 1.0 - 1e-9 <= found[0].t_s - t0 <= 1.0 + DT + 1e-9
    assert found[0].since_s == pytest.approx(t0)
    an.update(syn.step(queues=(None, 1, 1)))
    assert [f.key for f in an.last_cleared] == [("stage1", "stall")]
    assert not [f for f in an.active if f.kind == "failed"]


def test_no_progress_is_not_a_failure_when_blocked_or_empty():
    """Blocked downstream (the output queue is full) or nothing queued: not failed."""
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn, queues=(None, 1, 1))
    found = steady(an, syn, 2.0, rates=(0, 0, 1000), queues=(None, CAP, CAP))  # stage 1 blocked
    found += steady(an, syn, 2.0, rates=(1000, 1000, 0), queues=(None, 1, 0))  # stage 2 starved
    assert not [f for f in found if f.kind == "failed"]


def test_a_failed_probe_is_failed_at_once_and_returns():
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn)
    found = an.update(syn.step(errors={"fpga": "TimeoutError: no answer"}))
    assert [(f.stage, f.device, f.kind, f.signal) for f in found] == [
        (None, "fpga", "failed", "probe")]
    assert "stage1" in found[0].reason and "TimeoutError" in found[0].reason
    assert an.update(syn.step(errors={"fpga": "TimeoutError: no answer"})) == []  # once
    an.update(syn.step())
    assert [f.device for f in an.last_cleared] == ["fpga"] and an.active == []


# ------------------------------------------------------------------------ state


def test_a_rerouted_stage_relearns():
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn)
    assert run_until_found(an, syn, 1.0, ratios=(1, 3, 1))
    syn.devices[1] = "cpu"  # the NPM moved stage 1: the old baseline described the fpga
    an.update(syn.step(ratios=(1, 3, 1)))
    assert [f.stage for f in an.last_cleared] == ["stage1"] and an.active == []
    assert steady(an, syn, 3.0, ratios=(1, 3, 1)) == [], "3x is the new device's normal"


def test_replan_relearns_changed_stages_only():
    an, syn = Analyser(plan3()), Synth()
    steady(an, syn)
    plan = plan3()
    plan.stages[1].predicted_s = 3 * PRED[1]  # moved layers: a new prediction
    an.replan(plan)
    assert an.departure("stage1") is None and an.departure("stage0") == pytest.approx(1.0)


def test_config_refuses_no_hysteresis():
    with pytest.raises(ValueError, match="hysteresis"):
        AnalyseConfig(enter=1.2, exit=1.2)
