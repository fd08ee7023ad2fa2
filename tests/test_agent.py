"""The board agent (hwpart board serve) on loopback, with the simulated board behind it.

The agent runs in a separate process, as on a board; every test talks to it over
127.0.0.1 with CURVE keys. What it must refuse: a key it does not know, a
bitstream its board.json does not list (or one that changed), an oversized
frame, a malformed frame -- each answered (or dropped) without the agent dying.
What it must do: a partitioned run whose FPGA stage goes through it equals the
local simulated-board run bit for bit.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from test_fpga_support import graph, jet_rms, make_plan, other_rm

pytest.importorskip("pynq")
zmq = pytest.importorskip("zmq")

from hwpart.board import protocol as proto  # noqa: E402
from hwpart.board.agent import spawn  # noqa: E402
from hwpart.board.client import AgentClient  # noqa: E402
from hwpart.board.errors import (  # noqa: E402
    AgentAuthError,
    AgentError,
    BundleIntegrityError,
    FpgaDown,
)
from hwpart.board.keys import generate  # noqa: E402
from hwpart.board.manifest import write_board_manifest  # noqa: E402
from hwpart.board.measured import load_measured  # noqa: E402
from hwpart.devices.fpga import FpgaDevice  # noqa: E402
from hwpart.errors import HwpartError  # noqa: E402

MAX_BYTES = 256 * 1024  # the test agent's limit on a message's arrays
NO_PACE = {"HWPART_SIM_PACE": "0"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from hwpart.sim.bundle import write_sim_bundle

    b = write_sim_bundle(tmp_path_factory.mktemp("agent") / "b", "jet", [*jet_rms(), other_rm()])
    write_board_manifest(b.root)
    return b


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    generate(d)
    return d


@pytest.fixture(scope="module")
def agent(bundle, keys):
    a = spawn(bundle.root, keys, "--sim", "--max-mb", str(MAX_BYTES / 2**20), env=NO_PACE)
    yield a
    assert a.stop() == 0  # a clean exit on SIGTERM: nothing it was sent crashed it


def client(agent, keys, **kw) -> AgentClient:
    return AgentClient(agent.url, keys / "client.key_secret", **kw)


def raw(agent, keys) -> zmq.Socket:
    """A bare authenticated DEALER socket, for frames no client of ours would send."""
    from hwpart.board.keys import client_keys

    pub, sec, srv = client_keys(keys / "client.key_secret")
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, srv
    s.connect(f"tcp://127.0.0.1:{agent.port}")
    return s


def ask(sock, frames, timeout_s: float = 30.0) -> dict | None:
    sock.send_multipart(frames)
    if not sock.poll(int(timeout_s * 1000)):
        return None
    return json.loads(sock.recv_multipart()[0])


def head(**h) -> bytes:
    return json.dumps({"v": 1, "seq": 1, **h}).encode()


# --------------------------------------------------------------------------- refusals


def test_an_unknown_key_is_refused(agent, keys, tmp_path):
    other = tmp_path / "other"
    generate(other)
    shutil.copyfile(keys / "server.key", other / "server.key")  # right agent, unknown client
    c = AgentClient(agent.url, other / "client.key_secret", timeout_s=30)
    with pytest.raises(AgentAuthError, match=r"127\.0\.0\.1:\d+ refused our key .*authorized/"):
        c.hello()
    c.close()
    plain = zmq.Context.instance().socket(zmq.DEALER)  # no CURVE at all: no handshake
    plain.setsockopt(zmq.LINGER, 0)
    plain.connect(f"tcp://127.0.0.1:{agent.port}")
    assert ask(plain, [head(op="hello")], timeout_s=3) is None
    plain.close(0)
    ok = client(agent, keys)
    assert ok.ping()[0] > 0  # the agent still serves the keys it knows
    ok.close()


def test_a_wrong_agent_key_never_gets_through(agent, keys, tmp_path):
    """The client's side of CURVE: a server key that is not the agent's gets no answer, and
    the time-out says the handshake did not complete."""
    other = tmp_path / "other"
    generate(other)
    c = AgentClient(agent.url, keys / "client.key_secret", server_key=other / "server.key",
                    timeout_s=3)
    with pytest.raises(FpgaDown, match=r"did not answer 'hello' in 3 s \(a connection was made "
                                       r"but the CURVE handshake did not complete"):
        c.hello()
    c.close()


def test_unlisted_or_changed_bitstreams_are_refused(agent, keys, bundle, tmp_path):
    c = client(agent, keys)
    c.open()
    with pytest.raises(AgentError, match=r"no RM named 'evil'.*\[board agent 127\.0\.0\.1:"):
        c.swap(0, "evil")
    with pytest.raises(AgentError, match="field 'slot' must be int"):
        c.request({"op": "swap", "slot": "0", "rm": "fc3"})
    # a bundle whose files do not match its board.json is not served at all
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    bad = root / "partials" / "slot1_other32.bit"
    bad.write_bytes(bad.read_bytes() + b" ")
    with pytest.raises(HwpartError, match=r"slot1_other32\.bit: sha256 .* differs from .*board"
                                          r"\.json"):
        spawn(root, keys, "--sim", env=NO_PACE)
    c.close()
    with pytest.raises(HwpartError, match="simulated board's stand-ins .*serve it with --sim"):
        spawn(bundle.root, keys, env={**NO_PACE, "HWPART_FPGA": "auto"})


def test_a_partial_changed_after_start_is_refused_before_download(bundle, keys, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    with spawn(root, keys, "--sim", env=NO_PACE) as a:
        c = client(a, keys)
        c.open()
        assert c.ensure(0, "fc3") > 0  # the check passed at start; the swap is modeled time
        bad = root / "partials" / "slot0_other32.bit"
        bad.write_bytes(bad.read_bytes() + b" ")
        with pytest.raises(BundleIntegrityError, match=r"slot0_other32\.bit: sha256"):
            c.swap(0, "other32")
        assert c.slot_rms()[0] == "fc3"  # nothing was downloaded
        c.close()


def test_oversized_frames_are_refused_and_the_agent_lives_on(agent, keys):
    s = raw(agent, keys)
    big = np.zeros(MAX_BYTES + 1, np.uint8)
    rep = ask(s, [head(op="ping", arrays=[{"dtype": "uint8", "shape": [big.size],
                                            "nbytes": big.size}]), big.tobytes()])
    assert rep is not None and not rep["ok"] and "exceeds the limit" in rep["message"]
    # past ZeroMQ's own bound the peer is dropped unread: no answer, and no harm
    huge = np.zeros(MAX_BYTES + proto.MAX_HEADER_BYTES + 4096, np.uint8)
    assert ask(s, [head(op="ping"), huge.tobytes()], timeout_s=3) is None
    s.close(0)
    c = client(agent, keys)
    assert c.ping()[0] > 0  # still serving
    # our own client refuses before sending, and says what to do
    with pytest.raises(AgentError, match="over its limit of 262144 bytes: use a smaller batch"):
        c.ping(send_bytes=MAX_BYTES + 1)
    c.close()


@pytest.mark.parametrize("frames, why", [
    ([b"\xff\xfe not json"], "not UTF-8 JSON"),
    ([b"[1, 2]"], "must be a JSON object"),
    ([json.dumps({"v": 9, "op": "ping"}).encode()], "protocol version 9"),
    ([head(op="reboot")], "unknown operation 'reboot'"),
    ([head(op="ping", arrays=[{"dtype": "uint8", "shape": [8], "nbytes": 8}])],
     "describes 1 arrays but 0 data frames"),
    ([head(op="ping", arrays=[{"dtype": "uint8", "shape": [8], "nbytes": 8}]), b"1234"],
     "the frame holds 4"),
    ([head(op="ping", arrays=[{"dtype": "O", "shape": [1], "nbytes": 8}]), b"12345678"],
     "dtype 'O' is not one of"),
    ([head(op="ping", arrays=[{"dtype": "uint8", "shape": [-1], "nbytes": 1}]), b"1"],
     "non-negative integers"),
    ([head(op="ping"), *[b"x"] * 6], "more than 5 frames"),
    ([head(op="run", rms=["fc3"], slots=[0])], "one uint8 array of stream words"),
    ([head(op="run", rms="fc3", slots=[0])], "field 'rms' must be list"),
    ([head(op="swap", slot=True, rm="fc3")], "field 'slot' must be int"),
])
def test_malformed_frames_get_an_error_reply(agent, keys, frames, why):
    s = raw(agent, keys)
    rep = ask(s, frames)
    assert rep is not None, "no reply: the agent must answer a malformed frame"
    assert rep["ok"] is False and rep["error"] == "AgentError"
    assert why in rep["message"] and rep["message"].startswith("bad request:")
    assert ask(s, [head(op="ping")])["ok"]  # and carries on
    s.close(0)


# --------------------------------------------------------------------------- the FPGA across the network


ONE_STAGE = [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3", "_4", "_5"]), ("cpu", ["_6", "_7"])]
TWO_STAGES = [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3"]), ("fpga1", ["_4", "_5"]),
              ("cpu", ["_6", "_7"])]


def run_model_on(dev, x, stages=ONE_STAGE):
    from hwpart.devices.cpu import CpuDevice
    from hwpart.runtime import run_model

    lg = graph("jet_tagger")
    plan = make_plan(lg, stages, batch=16)
    return run_model(lg, plan, x, batch=16, devices={"cpu": CpuDevice(), "fpga": dev})


def test_a_partitioned_run_through_the_agent_equals_the_local_simulated_board(agent, keys,
                                                                               bundle):
    x = torch.from_numpy(np.random.default_rng(11).uniform(-3, 3, (200, 16)).astype(np.float32))
    local = run_model_on(FpgaDevice(bundle.root, fpga="sim", pace=False), x)
    dev = FpgaDevice(bundle.root, fpga=agent.url, key=keys / "client.key_secret")
    remote = run_model_on(dev, x)
    assert torch.equal(remote.output(), local.output())
    assert remote.output().shape == (200, 5)
    assert "127.0.0.1" in dev.name and "simulated" in dev.name
    assert [s.rm for s in dev._slots] == ["fc2", "fc3"]
    # one round trip per batch, its time the board's modeled time (labelled so)
    plan = dev.plan(["fc3"], 1)
    y = dev.run_array(plan, x[:64, :].numpy()[:, :16].repeat(2, axis=1))
    assert y.shape == (64, 32) and plan.last.modeled and plan.last.service_s > 0
    assert plan.last.link_s > 0
    m = dev.metrics()
    assert m["modeled_busy_s"] is not None and m["modeled_busy_s"] > 0


def test_two_fpga_stages_share_the_remote_board(agent, keys, bundle):
    """fpga0 and fpga1 as two pipeline stages (two worker threads, one client, one DMA on
    the board): every sample still equals the local simulated board's."""
    x = torch.from_numpy(np.random.default_rng(13).uniform(-3, 3, (160, 16)).astype(np.float32))
    local = run_model_on(FpgaDevice(bundle.root, fpga="sim", pace=False), x, TWO_STAGES)
    dev = FpgaDevice(bundle.root, fpga=agent.url, key=keys / "client.key_secret")
    assert torch.equal(run_model_on(dev, x, TWO_STAGES).output(), local.output())


def test_the_host_refuses_an_agent_serving_other_bitstreams(agent, keys, tmp_path):
    """An RM of the same name but another function: its partials' sha256 differ, so the host
    will not plan on the agent's board with its own bundle's types and layers."""
    from hwpart.sim.bundle import write_sim_bundle

    impostor = other_rm("fc3")  # 32 -> 32 like fc3, computing something else
    b = write_sim_bundle(tmp_path / "host", "jet", [jet_rms()[0], impostor])
    dev = FpgaDevice(b.root, fpga=agent.url, key=keys / "client.key_secret")
    with pytest.raises(AgentError, match=r"serves bundle jet, which is not the host's .*RM "
                                         r"fc3's partial for slot 0 differs.*Deploy the same"):
        dev.open()


def test_fail_and_restore_across_the_network(agent, keys, bundle):
    dev = FpgaDevice(bundle.root, fpga=agent.url, key=keys / "client.key_secret")
    plan = dev.plan(["fc3"], 0)
    x = np.random.default_rng(12).uniform(-1, 1, (8, 32)).astype(np.float32)
    y = dev.run_array(plan, x)
    dev.fail("injected")
    with pytest.raises(FpgaDown, match="injected"):
        dev.run_array(plan, x)
    dev.restore()  # the agent reloads the shell: every slot empty, swapped in again
    assert np.array_equal(dev.run_array(plan, x), y)


def test_an_agent_that_stops_answering_is_a_device_failure(bundle, keys):
    a = spawn(bundle.root, keys, "--sim", env=NO_PACE)
    warm = client(a, keys, timeout_s=120)  # the first batch may compile the RM's batch loop
    warm.run(["fc3"], [0], np.zeros(64, np.uint8))
    warm.close()
    dev = FpgaDevice(bundle.root, fpga=a.url, key=keys / "client.key_secret",
                     remote_timeout_s=3)
    plan = dev.plan(["fc3"], 0)
    x = np.zeros((4, 32), np.float32)
    dev.run_array(plan, x)
    a.stop()
    with pytest.raises(FpgaDown, match=rf"board agent 127\.0\.0\.1:{a.port} did not answer "
                                       r"'run' in \d+ s \(it stopped answering\)"):
        dev.run_array(plan, x)


def test_an_unreachable_agent_is_one_clear_line(bundle, keys, capsys):
    from hwpart.board.cli import main

    with zmq.Context.instance().socket(zmq.REP) as s:  # a free port nobody serves
        port = s.bind_to_random_port("tcp://127.0.0.1")
    rc = main(["link", f"remote://127.0.0.1:{port}", "--key", str(keys / "client.key_secret"),
               "--rounds", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"board agent 127.0.0.1:{port} did not answer 'hello'" in err[0]
    assert "nothing accepted a connection there" in err[0]


def test_the_link_is_measured_into_the_bundle(agent, keys, bundle, tmp_path, capsys):
    from hwpart.board.cli import main

    root = tmp_path / "b"
    root.mkdir()
    assert main(["link", agent.url, "--key", str(keys / "client.key_secret"),
                 "--bundle", str(root), "--rounds", "5"]) == 0
    assert "(measured)" in capsys.readouterr().out
    link = load_measured(root)["link"]
    assert link["simulated"] is False and agent.url[len("remote://"):] in link["source"]
    assert link["data"]["rtt_s"] > 0 and link["data"]["bandwidth_Bps"] > 0


def test_hwpart_run_drives_the_fpga_through_the_agent(agent, keys, bundle, tmp_path, capsys,
                                                      monkeypatch):
    """`hwpart run --fpga remote://HOST:PORT --key KEYFILE --overlay BUNDLE`: the link is
    measured into the bundle first (none was), then the FPGA stage runs on the agent."""
    from test_fpga_support import ROOT

    from hwpart.cli import main

    for var in ("HWPART_FPGA", "HWPART_OVERLAY", "HWPART_FPGA_KEY"):  # run sets them: undone
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    lg = graph("jet_tagger")
    make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3", "_4", "_5"]),
                   ("cpu", ["_6", "_7"])], batch=16).save(tmp_path / "plan.json")
    args = ["run", f"{ROOT}/host/models.py:jet_tagger", "--input-shape", "16", "--plan",
            str(tmp_path / "plan.json"), "--overlay", str(root), "--samples", "160",
            "--no-live", "--report", str(tmp_path / "r.json")]
    assert main([*args, "--fpga", agent.url, "--key", str(keys / "client.key_secret")]) == 0
    out = capsys.readouterr().out
    assert "link to the board agent 127.0.0.1:" in out and "measured now" in out
    assert load_measured(root)["link"]["data"]["rtt_s"] > 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 160
    with pytest.raises(SystemExit) as exit_:  # no port: a usage error, before anything runs
        main([*args, "--fpga", "remote://127.0.0.1"])
    assert exit_.value.code == 2 and "remote://HOST:PORT" in capsys.readouterr().err
