"""Incoming calls from SIPp straight to the gateway: media, DTMF, re-INVITE, CANCEL, busy, timeout."""

from __future__ import annotations

import signal
import subprocess
import threading

from tests.integration.conftest import SCENARIOS, run_sipp_refused
from tests.rig.gateway import GatewayProcess, gateway_config
from tests.rig.sipp import SippResult, parse_message_log, run_sipp, run_sipp_uac_pcap


def call_in_background(gw: GatewayProcess, workdir) -> tuple[threading.Thread, dict[str, SippResult]]:
    """SIPp's uac_pcap call (~9.5 s, ending with its own BYE) on a thread; returns once the gateway confirmed it.

    The thread's result lands in the dict under "call" when SIPp exits.
    """
    result: dict[str, SippResult] = {}

    def call() -> None:
        result["call"] = run_sipp_uac_pcap(f"127.0.0.1:{gw.sip_port}", "voicegate", workdir, timeout=30)

    thread = threading.Thread(target=call)
    thread.start()
    gw.wait_log("call_confirmed", timeout=10)
    return thread, result


def test_uac_pcap_call_is_answered_echoed_and_dtmf_reported(gateway_factory, tmp_path):
    gw = gateway_factory(gateway_config())
    result = run_sipp_uac_pcap(f"127.0.0.1:{gw.sip_port}", "voicegate", tmp_path / "sipp", timeout=30)
    assert result.ok, result.describe()
    digit = gw.wait_log("dtmf_received")
    assert digit["digit"] == "1"
    assert len(gw.find("dtmf_received")) == 1  # redundant end packets are not reported again
    ended = gw.wait_log("call_ended")
    assert ended["rtp_received"] > 200  # ~5 s of A-law from the pcap
    assert ended["rtp_sent"] >= ended["rtp_received"] * 0.9  # we send 50 packets/s both ways
    assert ended["reason"].startswith("remote_bye")
    assert not gw.errors()


def test_reinvite_hold_unhold_and_codec_change_keep_the_rtp_session(gateway_factory, tmp_path):
    gw = gateway_factory(gateway_config())
    result = run_sipp(SCENARIOS / "reinvite_hold_codec.xml", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp",
                      service="voicegate", timeout=30)
    assert result.ok, result.describe()
    answers = [m for m in parse_message_log(result.messages()) if m.direction == "received" and m.status == 200
               and "m=audio" in m.text]
    assert len(answers) == 3
    ports = {line.split()[1] for m in answers for line in m.text.splitlines() if line.startswith("m=audio")}
    assert len(ports) == 1  # same RTP port through hold, unhold and codec change
    assert "a=recvonly" in answers[1].text  # hold answered as hold
    assert " 0 " in next(ln for ln in answers[2].text.splitlines() if ln.startswith("m=audio")) + " "
    media = gw.find("call_media")
    assert [m["codec"] for m in media] == ["PCMA", "PCMA", "PCMU"]
    assert [m["send"] for m in media] == [True, False, True]
    assert len({m["local_port"] for m in media}) == 1
    gw.wait_log("call_ended")


def test_cancel_before_answer_releases_the_call(gateway_factory, tmp_path):
    config = gateway_config(agents={"front-desk": {"type": "echo", "answer_after_s": 5}})
    gw = gateway_factory(config)
    result = run_sipp(SCENARIOS / "cancel_while_ringing.xml", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp",
                      service="voicegate", timeout=20)
    assert result.ok, result.describe()
    ended = gw.wait_log("call_ended")
    assert ended["reason"].startswith("not_answered")
    assert ended["code"] == 487
    assert gw.wait_log("rtp_released")["ports_in_use"] == 0


def test_max_calls_gives_486_and_the_first_call_keeps_its_audio(gateway_factory, tmp_path):
    gw = gateway_factory(gateway_config(max_calls=1))
    t, first = call_in_background(gw, tmp_path / "sipp1")
    busy = run_sipp_refused(gw, 486, tmp_path / "sipp2")
    t.join(40)
    assert busy.ok, busy.describe()
    assert gw.find("call_rejected_busy")
    assert first["call"].ok, first["call"].describe()
    ended = gw.wait_log("call_ended")
    assert ended["rtp_received"] > 200


def test_rtp_inactivity_hangs_up_with_bye(gateway_factory, tmp_path):
    gw = gateway_factory(gateway_config(rtp={"inactivity_timeout_s": 2}))
    result = run_sipp(SCENARIOS / "wait_for_bye.xml", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp",
                      service="voicegate", timeout=20)
    assert result.ok, result.describe()
    ended = gw.wait_log("call_ended")
    assert ended["reason"].startswith("rtp_timeout")
    assert gw.wait_log("rtp_released")["ports_in_use"] == 0
    hangup = gw.find("call_hangup")[0]
    assert hangup["reason"].startswith("rtp_timeout")


def test_options_is_answered(gateway_factory):
    gw = gateway_factory(gateway_config())
    done = subprocess.run(["sipsak", "-s", gw.uri], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_the_dialled_number_picks_the_agent(gateway_factory, tmp_path):
    config = gateway_config(agents={"front-desk": {"type": "echo"}, "sales": {"type": "echo"}})
    config["sip"]["routes"] = {"2005": "sales"}
    gw = gateway_factory(config)
    for number in ("2005", "2001"):
        result = run_sipp_uac_pcap(f"127.0.0.1:{gw.sip_port}", number, tmp_path / f"sipp{number}", timeout=30)
        assert result.ok, result.describe()
    agents = [e["agent"] for e in gw.find("call_incoming")]
    assert agents == ["sales", "front-desk"]


def test_sigusr1_drains_new_calls_get_503_and_the_gateway_exits_after_the_last_call(gateway_factory, tmp_path):
    gw = gateway_factory(gateway_config())
    t, first = call_in_background(gw, tmp_path / "sipp1")
    gw.process.send_signal(signal.SIGUSR1)
    assert gw.wait_log("gateway_draining", timeout=5)["active_calls"] == 1
    refused = run_sipp_refused(gw, 503, tmp_path / "sipp2")
    assert refused.ok, refused.describe()
    assert gw.find("call_rejected_draining")
    assert gw.process.poll() is None  # still up: a call is not finished
    t.join(40)
    assert first["call"].ok, first["call"].describe()  # the call up ended normally, by its own BYE
    assert gw.wait_exit(15) == 0
    assert gw.find("gateway_drained")
    assert gw.find("call_ended")[0]["reason"].startswith("remote_bye")


def test_a_drain_that_outlasts_drain_timeout_s_hangs_up_the_rest_and_exits(gateway_factory, tmp_path):
    config = gateway_config()
    config["sip"]["drain_timeout_s"] = 2
    gw = gateway_factory(config)
    t, _ = call_in_background(gw, tmp_path / "sipp")
    gw.process.send_signal(signal.SIGUSR1)
    assert gw.wait_log("gateway_draining", timeout=5)["timeout_s"] == 2
    assert gw.wait_exit(15) == 0  # well before SIPp's ~9.5 s call would have ended
    assert gw.find("gateway_drain_timeout")[0]["active_calls"] == 1
    assert gw.find("call_hangup", reason="shutdown")  # the remaining call got a BYE
    t.join(30)


def test_a_call_longer_than_max_call_duration_s_is_hung_up(gateway_factory, tmp_path):
    config = gateway_config()
    config["sip"]["max_call_duration_s"] = 2
    gw = gateway_factory(config)
    result = run_sipp(SCENARIOS / "wait_for_bye.xml", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp",
                      service="voicegate", timeout=20)
    assert result.ok, result.describe()  # SIPp sent no RTP, but the timeout (30 s) is not what ended it
    ended = gw.wait_log("call_ended")
    assert ended["reason"].startswith("max_duration") and 1.5 < ended["duration_s"] < 5
    assert gw.find("call_max_duration")[0]["limit_s"] == 2
