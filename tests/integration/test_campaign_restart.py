"""A campaign survives a gateway restart: the real gateway calls out through Kamailio to SIPp callees,
is stopped (SIGTERM) while a call rings, and started again on the same config and database; the
campaign goes on by itself and each contact is dialled exactly as often as the policy says.

Echo agent: no models.  The contacts: one that answers (done before the stop: never dialled again),
one that rings forever (in flight at the stop: `interrupted`, retried once after the restart per
`retry.interrupted`, then `no_answer` at the ring timeout), one not tried before the stop (dialled
once after it).
"""

from __future__ import annotations

import json
import time
from collections import Counter

from tests.integration.conftest import SCENARIOS
from tests.integration.test_operations_api import campaign_finished, http, operated_gateway

RING_TIMEOUT_S = 8  # the ringing contact's INVITE must still ring when the gateway is stopped


def results(port: int, campaign: str) -> dict[int, dict]:
    status, body = http(port, "GET", f"/campaigns/{campaign}/results")
    assert status == 200, body
    return {r["row"]: r for r in json.loads(body)["contacts"]}


def dialled_users(*gateways) -> Counter:
    """How often each callee's user part was dialled, over the logs of every gateway process."""
    return Counter(str(line["remote"]).split("@")[0].rsplit(":", 1)[-1]
                   for gw in gateways for line in gw.find("call_outgoing"))


def test_a_campaign_goes_on_after_a_restart_and_dials_each_contact_as_often_as_it_should(
        kamailio, gateway_factory, sipp_uas_factory, tmp_path):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk", "ring_timeout_s": RING_TIMEOUT_S}
    # the SIPp callees answer and send no media: the gateway ends those calls after 3 s without RTP
    gw, port = operated_gateway(gateway_factory, tmp_path, accounts=[account], rtp={"inactivity_timeout_s": 3})
    gw.wait_log("sip_registered", timeout=60)
    first = sipp_uas_factory(scenario=SCENARIOS / "uas_bye_after.xml", name="first")
    ringing = sipp_uas_factory(scenario=SCENARIOS / "uas_ring_forever.xml", name="ringing")
    last = sipp_uas_factory(scenario=SCENARIOS / "uas_bye_after.xml", name="last")
    contacts = [first.uri("first"), ringing.uri("ringing"), last.uri("last")]
    csv_text = "to,name\n" + "".join(f"{to},Contact {i}\n" for i, to in enumerate(contacts, start=1))
    status, body = http(port, "POST", "/campaigns", {
        "csv": csv_text, "account": "2001", "concurrency": 1, "calls_per_second": 5, "max_attempts": 2,
        "retry": {"interrupted": 1, "no_answer": 1}})
    assert status == 202, body
    campaign = json.loads(body)["campaign_id"]

    deadline = time.monotonic() + 60
    while results(port, campaign)[2]["status"] != "calling":
        assert time.monotonic() < deadline, results(port, campaign)
        time.sleep(0.1)
    assert gw.stop() == 0  # while the second contact's call rings

    again = gateway_factory(gw.config)  # the same ports, the same database: the same gateway, restarted
    resumed = again.wait_log("campaign_resumed", timeout=30)
    assert resumed["campaign_id"] == campaign and resumed["left"] == 2, resumed
    progress = campaign_finished(port, campaign, timeout=90)
    assert progress["state"] == "finished" and not progress["running"], progress
    assert progress["outcomes"] == {"answered": 2, "no_answer": 1}, progress

    rows = results(port, campaign)
    assert (rows[1]["outcome"], rows[1]["attempts"]) == ("answered", 1)
    assert [h["outcome"] for h in rows[2]["history"]] == ["interrupted", "no_answer"]
    assert rows[2]["attempts"] == 2 and rows[2]["name"] == "Contact 2"
    assert (rows[3]["outcome"], rows[3]["attempts"]) == ("answered", 1)
    assert dialled_users(gw, again) == {"first": 1, "ringing": 2, "last": 1}
    interrupted = again.find("campaign_attempt_interrupted")
    assert [line["row"] for line in interrupted] == [2], interrupted
    status, body = http(port, "GET", "/campaigns")
    assert [(c["campaign_id"], c["state"]) for c in json.loads(body)["campaigns"]] == [(campaign, "finished")]
    # pjsip logs SIPp's 487 to the CANCEL (no Via once through Kamailio) at error level: not ours
    assert [e for e in gw.errors() + again.errors() if e["event"] != "pjsip"] == []
