"""The web console in a real browser (headless Debian chromium, Selenium) against a real gateway.

baresip calls the conversation agent through Kamailio and asks two espeak-ng questions; the
operator logs in, sees the call appear on the live page, watches its transcript grow as the
turns happen (Server-Sent Events fed from the call's record hook), hangs it up from the page,
then opens the finished call in the history, sees its timeline and plays its recording. Every
page is screenshotted into tests/artifacts/<test>/ (gitignored).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.conftest import require_binaries
from tests.integration.conftest import SCENARIOS
from tests.integration.test_conversation_call import GREETING, INSTRUCTIONS
from tests.rig.audio import make_speech_wav, read_wav, write_wav
from tests.rig.browser import artifact_dir, chromium
from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config
from tests.rig.ports import free_udp_port

pytestmark = pytest.mark.integration

PASSWORD = "console-password-for-tests"
QUESTIONS = (("What time do you open?", 4.5), ("Where are you located?", 22.0))
CALL_S = 90.0  # longer than the test needs: the console hangs the call up, not baresip


def caller_wav(folder):
    samples = np.zeros(int(CALL_S * 8000))
    for i, (text, at) in enumerate(QUESTIONS):
        speech, _ = read_wav(make_speech_wav(text, folder / f"q{i}.wav", pad_after_s=0.0))
        start = int(at * 8000)
        samples[start:start + len(speech)] += speech
    return write_wav(folder / "caller.wav", samples)


def test_operator_watches_a_live_call_hangs_it_up_and_replays_it(kamailio, gateway_factory, baresip_factory,
                                                                   tmp_wav_dir, tmp_path, request):
    require_binaries("chromium", "chromedriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    http_port = free_udp_port()
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    config = gateway_config(accounts=[account], agents={
        "front-desk": {"type": "conversation", "model_timeout_s": PATIENT_MODEL_TIMEOUT_S,
                       "greeting": GREETING, "instructions": INSTRUCTIONS}})
    config["http"] = {"listen": f"127.0.0.1:{http_port}", "console_password": "${CONSOLE_PASSWORD}"}
    config["recording"] = {"directory": str(tmp_path / "records"), "audio": True}
    gw = gateway_factory(config, env={"CONSOLE_PASSWORD": PASSWORD})
    gw.wait_log("sip_registered", timeout=60)
    kamailio.wait_registered("2001")
    shots = artifact_dir(request.node.name)
    base = f"http://127.0.0.1:{http_port}"

    with chromium() as driver:
        wait = WebDriverWait(driver, 30)
        driver.get(base + "/")
        assert "/console/login" in driver.current_url  # no page without a session
        driver.save_screenshot(str(shots / "01-login.png"))
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "stream-status"), "Live updates: on"))
        assert driver.find_elements(By.CSS_SELECTOR, "article.call") == []

        caller = baresip_factory("2002", kamailio=kamailio, source_wav=caller_wav(tmp_wav_dir),
                                 call_duration_s=CALL_S)
        caller.wait_registered()
        caller.dial(kamailio.uri("2001"))
        caller.wait_call_established(timeout=10)
        card = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "article.call")))
        assert "2002" in card.find_element(By.CSS_SELECTOR, ".remote").text
        assert card.find_element(By.CSS_SELECTOR, ".agent").text == "front-desk"

        # The transcript grows as the turns happen: the first answer, then the second question.
        # Generous timeouts: a reply takes seconds on a busy 2-core machine.
        slow = WebDriverWait(driver, 90)
        slow.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.call .transcript li.bot")) >= 1)
        first = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "article.call .transcript li")]
        assert "harbor dental" in first[0].lower(), first  # the greeting, said before the call's card existed
        driver.save_screenshot(str(shots / "02-live-first-turn.png"))
        slow.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.call .transcript li.caller")) >= 2)
        grown = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "article.call .transcript li")]
        assert len(grown) > len(first), (first, grown)
        assert "open" in " ".join(grown).lower(), grown
        # A turn's row is complete (ends in its first RTP time) once its reply was heard; a turn the
        # bot did not answer with audio (a cough, a repeat request cut short) keeps "-" cells.
        def latency_rows(d: Any) -> list[str]:
            return [r.text for r in d.find_elements(By.CSS_SELECTOR, "article.call table.latency tbody tr")]

        slow.until(lambda d: any(row.endswith("ms") for row in latency_rows(d)))
        driver.save_screenshot(str(shots / "03-live-transcript-grown.png"))

        driver.find_element(By.CSS_SELECTOR, "article.call form button.danger").click()
        wait.until(ec.alert_is_present()).accept()
        caller.wait_call_closed(timeout=20)
        ended = gw.wait_log("call_ended", timeout=20)
        assert ended["reason"].startswith("api"), ended
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "article.call") == [])
        driver.save_screenshot(str(shots / "04-live-after-hangup.png"))

        driver.get(base + "/console/history?caller=2002")
        link = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.history a")))
        assert "api" in driver.find_element(By.CSS_SELECTOR, "table.history").text
        driver.save_screenshot(str(shots / "05-history.png"))
        link.click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.timeline")))
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.timeline rect")) >= 3
        said = driver.find_element(By.CSS_SELECTOR, "ol.transcript").text.lower()
        assert "open" in said, said
        audio = driver.find_element(By.ID, "recording")
        driver.execute_script("arguments[0].play();", audio)
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return arguments[0].currentTime;", audio) > 0.5)
        duration = driver.execute_script("return arguments[0].duration;", audio)
        assert duration > 10, duration  # the whole call, caller and bot, as recorded
        driver.save_screenshot(str(shots / "06-call-timeline-audio.png"))

        for name in ("messages", "callers", "campaigns", "health"):
            driver.get(f"{base}/console/{name}")
            wait.until(ec.presence_of_element_located((By.ID, f"page-{name}")))
            driver.save_screenshot(str(shots / f"07-{name}.png"))
        assert "ready" in driver.find_element(By.ID, "readiness").text
    assert not gw.errors()


def test_operator_uploads_a_campaign_watches_its_results_and_downloads_them(kamailio, gateway_factory,
                                                                             sipp_uas_factory, tmp_path, request):
    """The campaigns page: a CSV file uploaded from disk, per-contact results filling in live (an answering
    callee through Kamailio, and a number Kamailio does not know: 404, unreachable), the CSV download, and
    the link from a contact to its call's page.  Echo agent: no models."""
    require_binaries("chromium", "chromedriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    http_port = free_udp_port()
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    config = gateway_config(accounts=[account], rtp={"inactivity_timeout_s": 3})  # SIPp answers, sends no media
    config["http"] = {"listen": f"127.0.0.1:{http_port}", "token": "${API_TOKEN}",
                      "console_password": "${CONSOLE_PASSWORD}"}
    config["recording"] = {"directory": str(tmp_path / "records")}
    gw = gateway_factory(config, env={"CONSOLE_PASSWORD": PASSWORD, "API_TOKEN": "api-token-for-console-tests"})
    gw.wait_log("sip_registered", timeout=60)
    kamailio.wait_registered("2001")
    answering = sipp_uas_factory(scenario=SCENARIOS / "uas_bye_after.xml", name="answering")
    upload = tmp_path / "reminders.csv"
    upload.write_text(f"to,name\n{answering.uri('anna')},Anna\nsip:2999@{kamailio.hostport},Nobody\n")
    shots = artifact_dir(request.node.name)
    base = f"http://127.0.0.1:{http_port}"

    with chromium() as driver:
        wait = WebDriverWait(driver, 30)
        driver.get(base + "/console/campaigns")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()
        wait.until(ec.presence_of_element_located((By.ID, "csv-file"))).send_keys(str(upload))
        wait.until(lambda d: "Anna" in d.find_element(By.ID, "csv-text").get_attribute("value"))
        driver.save_screenshot(str(shots / "01-campaign-upload.png"))
        driver.find_element(By.ID, "start-campaign").click()
        wait.until(ec.presence_of_element_located((By.ID, "page-campaign")))
        assert "/console/campaigns/" in driver.current_url

        def cells(d) -> list[list[str]]:  # read in one go: the stream replaces rows as results change
            return d.execute_script("return Array.from(document.querySelectorAll('table.results tbody tr'),"
                                    " (tr) => Array.from(tr.cells, (td) => td.textContent));")

        # filled in by the page's event stream, not by reloading it
        WebDriverWait(driver, 90).until(lambda d: [row[3] for row in cells(d)] == ["done", "done"])
        wait.until(ec.text_to_be_present_in_element((By.ID, "stream-status"), "finished"))
        anna, nobody = cells(driver)
        assert anna[1:5] == ["Anna", answering.uri("anna"), "done", "answered"], anna
        assert anna[6] == "1" and anna[7] != "-", anna  # one attempt, with its duration
        assert nobody[1:5] == ["Nobody", f"sip:2999@{kamailio.hostport}", "done", "unreachable"], nobody
        assert driver.find_element(By.ID, "campaign-progress").get_attribute("value") == "2"
        driver.save_screenshot(str(shots / "02-campaign-results.png"))

        download = driver.find_element(By.ID, "results-csv").get_attribute("href")
        csv_text = driver.execute_async_script(
            "fetch(arguments[0]).then((r) => r.text()).then(arguments[1]);", download)
        lines = csv_text.strip().splitlines()
        assert lines[0].startswith("row,to,name,") and len(lines) == 3, csv_text
        assert "answered" in lines[1] and "unreachable" in lines[2], csv_text

        driver.find_element(By.CSS_SELECTOR, "table.results a.call-link").click()
        wait.until(ec.presence_of_element_located((By.ID, "page-call")))
        assert "anna" in driver.find_element(By.CSS_SELECTOR, "dl.facts").text
        driver.save_screenshot(str(shots / "03-campaign-call.png"))
    assert not gw.errors()
