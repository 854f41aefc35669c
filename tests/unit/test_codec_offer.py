"""What pjsua offers and accepts: our RTP engine's codecs only, in the configured order.

pjsua does the SDP offer/answer (it answers with the offer's codec that has its highest priority),
so the priorities are the negotiation: G.722 first when the peer offers it, PCMU/PCMA when it does
not (real offers: tests/integration/test_wideband_call.py, and the SIPp/baresip G.711 calls).
A real pjsua2 endpoint on loopback.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.sip.stack import SipStack, StackSettings
from tests.rig.ports import free_sip_port


def _priorities(codecs: tuple[str, ...] | None) -> dict[str, int]:
    settings = StackSettings("127.0.0.1", free_sip_port(), "127.0.0.1", max_calls=1)
    stack = SipStack(settings if codecs is None else replace(settings, codecs=codecs))
    stack.start(on_started=lambda: None, on_shutdown=lambda: None)
    try:
        endpoint = stack.endpoint
        assert endpoint is not None
        return stack.submit(lambda: {i.codecId: i.priority for i in endpoint.codecEnum2()}).result(10)
    finally:
        stack.stop()


@pytest.mark.parametrize("codecs", [None, ("G722", "PCMU", "PCMA")])
def test_g722_is_offered_first_by_default(codecs):
    prio = _priorities(codecs)
    assert prio["G722/16000/1"] > prio["PCMU/8000/1"] > prio["PCMA/8000/1"] > 0
    others = {c: p for c, p in prio.items() if c.split("/")[0] not in ("G722", "PCMU", "PCMA")}
    assert others and all(p == 0 for p in others.values()), others  # speex, iLBC, GSM, L16: not ours


def test_a_narrowband_only_config_never_offers_g722():
    prio = _priorities(("PCMA", "PCMU"))
    assert prio["G722/16000/1"] == 0
    assert prio["PCMA/8000/1"] > prio["PCMU/8000/1"] > 0


def test_opus_in_the_list_is_reported_unavailable_and_the_rest_keep_their_order():
    """The RTP engine carries Opus, this pjsua2 build cannot negotiate it: the gateway says so once at
    start (`sip_codec_unavailable`) and offers the other codecs in their order."""
    import structlog

    with structlog.testing.capture_logs() as logs:
        prio = _priorities(("OPUS", "G722", "PCMU"))
    assert not any(c.lower().startswith("opus") for c in prio)  # when a pjsua2 with opus comes, this changes
    assert prio["G722/16000/1"] > prio["PCMU/8000/1"] > 0 and prio["PCMA/8000/1"] == 0
    unavailable = [e for e in logs if e["event"] == "sip_codec_unavailable"]
    assert [e["codec"] for e in unavailable] == ["OPUS"], unavailable
