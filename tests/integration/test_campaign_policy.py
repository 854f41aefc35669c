"""Campaign policy end to end: the real control API, the gateway registered on Kamailio and calling
out through it, SIPp callees (one busy, one answering), Kamailio's own 404 for an unknown
extension, and a number on the do-not-call list; the results as JSON and CSV.

Echo agent: no models.  Back-off is 1 s so the busy callee's second attempt comes within the test.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.integration.conftest import SCENARIOS
from tests.integration.test_operations_api import campaign_finished, http, operated_gateway


def test_campaign_retries_busy_skips_do_not_call_and_reports_per_contact(
        kamailio, gateway_factory, sipp_uas_factory, tmp_path):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    gw, port = operated_gateway(gateway_factory, tmp_path, accounts=[account])
    gw.wait_log("sip_registered", timeout=60)
    busy = sipp_uas_factory(scenario=SCENARIOS / "uas_busy.xml", name="busy")
    answering = sipp_uas_factory(scenario=SCENARIOS / "uas_bye_after.xml", name="answering")
    unlisted = f"sip:2999@{kamailio.hostport}"  # no such extension: Kamailio answers 404
    blocked = "+49 30 1234-567"
    status, body = http(port, "POST", "/do-not-call", {"number": blocked, "note": "asked us not to call"})
    assert status == 201 and json.loads(body) == {"added": ["+49301234567"]}, body

    contacts = [busy.uri("busy"), answering.uri("anna"), unlisted, "0049301234567"]
    csv_text = "to,name,timezone\n" + "".join(f"{to},Contact {i},Europe/Berlin\n" for i, to in enumerate(contacts))
    request = {"csv": csv_text, "account": "2001", "concurrency": 2, "calls_per_second": 5,
               "max_attempts": 2, "retry": {"busy": 1, "no_answer": 1}}
    status, body = http(port, "POST", "/campaigns", request)
    assert status == 202, body
    campaign = json.loads(body)["campaign_id"]
    progress = campaign_finished(port, campaign, timeout=60)
    assert not progress["running"], progress
    assert progress["outcomes"] == {"answered": 1, "busy": 1, "do_not_call": 1, "unreachable": 1}, progress

    status, body = http(port, "GET", f"/campaigns/{campaign}/results")
    assert status == 200, body
    results = {r["row"]: r for r in json.loads(body)["contacts"]}
    assert [h["code"] for h in results[1]["history"]] == [486, 486]  # busy, tried again after 1 s, busy again
    assert (results[1]["outcome"], results[1]["attempts"]) == ("busy", 2)
    anna = results[2]
    assert (anna["outcome"], anna["attempts"], anna["timezone"]) == ("answered", 1, "Europe/Berlin")
    assert anna["duration_s"] > 1.0  # the callee hangs up 1.5 s after answering
    assert anna["call_id"] and anna["record"].endswith(".jsonl")
    record = [json.loads(line) for line in Path(anna["record"]).read_text(encoding="utf-8").splitlines()]
    assert record[0]["kind"] == "call_start" and record[0]["call_id"] == anna["call_id"]
    assert (results[3]["outcome"], results[3]["history"][0]["code"]) == ("unreachable", 404)
    assert (results[4]["outcome"], results[4]["attempts"], results[4]["call_id"]) == ("do_not_call", 0, None)
    assert "49301234567" not in kamailio.log_text()  # never dialled

    status, text = http(port, "GET", f"/campaigns/{campaign}/results.csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["to"], r["outcome"], r["attempts"]) for r in rows] == [
        (contacts[0], "busy", "2"), (contacts[1], "answered", "1"), (unlisted, "unreachable", "1"),
        ("0049301234567", "do_not_call", "0")]
    assert rows[1]["call_id"] == anna["call_id"]
    assert [line["call_id"] for line in gw.find("campaign_attempt_ended")].count(anna["call_id"]) == 1

    # the results outlive the process: a restarted gateway on the same database still has them
    assert gw.stop() == 0
    again, again_port = operated_gateway(gateway_factory, tmp_path, database=gw.config["database"])
    status, body = http(again_port, "GET", f"/campaigns/{campaign}")
    assert status == 200 and json.loads(body)["kept"] is True, body
    assert json.loads(body)["outcomes"] == progress["outcomes"]
    assert http(again_port, "GET", f"/campaigns/{campaign}/results.csv") == (200, text)
    status, body = http(again_port, "GET", "/do-not-call")
    assert [e["number"] for e in json.loads(body)["numbers"]] == ["+49301234567"]
