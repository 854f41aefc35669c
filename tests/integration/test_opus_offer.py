"""baresip through Kamailio offering only Opus: what the gateway does with it today.

The RTP engine carries Opus (tests/integration/test_opus_media.py), but the pjsua2 build the gateway
signals with has no opus codec: pjsua can neither answer an opus-only offer nor build its (idle) media
stream for one. So the call must be refused cleanly, once, with the gateway healthy afterwards, and a
config that lists OPUS must say at start that the SIP stack cannot offer it. When a pjsua2 with opus is
used, this is the test to turn into "the call is negotiated as OPUS and the caller is transcribed".
"""

from __future__ import annotations

from tests.rig.gateway import gateway_config


def test_an_opus_only_offer_is_refused_cleanly_and_said_why(kamailio, gateway_factory, baresip_factory):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    config = gateway_config(accounts=[account], rtp={"codecs": ["OPUS", "G722", "PCMU", "PCMA"]})  # echo agent
    gw = gateway_factory(config)
    unavailable = gw.wait_log("sip_codec_unavailable", timeout=30)
    assert unavailable["codec"] == "OPUS" and unavailable["offered"] == ["G722", "PCMU", "PCMA"], unavailable
    gw.wait_log("sip_registered", timeout=60)
    kamailio.wait_registered("2001")
    caller = baresip_factory("2002", kamailio=kamailio, audio_codecs="opus/48000/2", modules=("opus.so",),
                             call_duration_s=5)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    closed = caller.wait_call_closed(timeout=20)
    print("baresip:", closed)
    assert not gw.find("call_media"), "an opus-only offer cannot have been negotiated by this pjsua2"
    assert "488" in str(closed) or "Not Acceptable" in str(closed), closed
    # The gateway is still there for the next caller, on a codec it can negotiate.
    pcmu = baresip_factory("2003", kamailio=kamailio, audio_codecs="PCMU", call_duration_s=3)
    pcmu.wait_registered()
    pcmu.dial(kamailio.uri("2001"))
    pcmu.wait_call_established(timeout=10)
    assert gw.wait_log("call_media", timeout=10)["codec"] == "PCMU"
    pcmu.wait_call_closed(timeout=30)
    # One error for the refused offer, pjsip's own ("Request verification failed: Not Acceptable Here"), no other
    errors = gw.errors()
    assert len(errors) == 1 and "Not Acceptable Here" in errors[0].get("msg", ""), errors
