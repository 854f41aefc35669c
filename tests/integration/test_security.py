"""Who may call: INVITEs from outside `sip.trusted_sources` get 403 and a security log line."""

from __future__ import annotations

from tests.integration.conftest import run_sipp_refused
from tests.rig.gateway import gateway_config
from tests.rig.sipp import run_sipp_uac_pcap


def test_invite_from_an_untrusted_source_is_refused_and_logged(gateway_factory, tmp_path):
    config = gateway_config()
    config["sip"]["trusted_sources"] = ["10.0.0.5/32"]
    gw = gateway_factory(config)
    refused = run_sipp_refused(gw, 403, tmp_path / "sipp")
    assert refused.ok, refused.describe()
    event = gw.wait_log("sip_security_event", timeout=5)
    assert event["kind"] == "untrusted_source" and event["src_ip"] == "127.0.0.1" and event["response"] == 403
    assert not gw.find("call_incoming")  # no call slot, no RTP ports


def test_invite_from_a_trusted_source_is_answered(gateway_factory, tmp_path):
    config = gateway_config()
    config["sip"]["trusted_sources"] = ["127.0.0.0/8"]
    gw = gateway_factory(config)
    result = run_sipp_uac_pcap(f"127.0.0.1:{gw.sip_port}", "voicegate", tmp_path / "sipp", timeout=30)
    assert result.ok, result.describe()
    assert not gw.find("sip_security_event")


def test_an_invite_flood_from_one_source_is_rate_limited(gateway_factory, tmp_path):
    config = gateway_config(max_calls=50)
    config["sip"]["invites_per_source_per_s"] = 1
    config["sip"]["invite_burst"] = 2
    gw = gateway_factory(config)
    for i in range(4):
        run_sipp_refused(gw, 403, tmp_path / f"sipp{i}", timeout=5)
    limited = [e for e in gw.find("sip_security_event") if e["kind"] == "rate_limited"]
    assert limited and limited[0]["response"] == 503
