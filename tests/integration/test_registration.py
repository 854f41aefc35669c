"""Registration against Kamailio as the PBX: digest auth, wrong password, registrar restarts."""

from __future__ import annotations

import time

from tests.rig.gateway import gateway_config


def account(kamailio, username="2001", password="secret", expires=60):
    return {
        "username": username,
        "password": password,
        "registrar": f"sip:{kamailio.hostport}",
        "domain": kamailio.domain,
        "agent": "front-desk",
        "register_expires_s": expires,
    }


def test_registers_with_digest_auth_and_unregisters_on_sigterm(kamailio, gateway_factory):
    config = gateway_config(accounts=[account(kamailio, "2001"), account(kamailio, "2003")])
    gw = gateway_factory(config, env={})
    gw.wait_log("sip_registered", account="sip:2001@127.0.0.1")
    gw.wait_log("sip_registered", account="sip:2003@127.0.0.1")
    assert kamailio.is_registered("2001") and kamailio.is_registered("2003")
    assert kamailio.saw_reply(401, "REGISTER")  # the first REGISTER was challenged
    assert gw.stop() == 0
    assert not kamailio.is_registered("2001")
    assert not kamailio.is_registered("2003")
    assert gw.find("gateway_stopped")
    assert not gw.errors()


def test_password_from_environment(kamailio, gateway_factory):
    config = gateway_config(accounts=[{**account(kamailio), "password": "${VG_TEST_PASSWORD}"}])
    gw = gateway_factory(config, env={"VG_TEST_PASSWORD": "secret"})
    gw.wait_log("sip_registered")
    assert kamailio.is_registered("2001")
    assert "secret" not in "\n".join(gw.raw)  # the password never reaches the log


def test_wrong_password_is_logged_clearly_and_retried_with_backoff(kamailio, gateway_factory):
    gw = gateway_factory(gateway_config(accounts=[account(kamailio, password="wrong")]))
    first = gw.wait_log("sip_registration_rejected", timeout=10)
    assert first["code"] in (401, 403)
    assert "password" in first["hint"]
    second = gw.wait_log("sip_registration_rejected", timeout=10, failures=2)
    assert second["retry_in_s"] > first["retry_in_s"]  # backoff grows
    assert not kamailio.is_registered("2001")
    assert gw.stop() == 0


def test_reregisters_after_registrar_restart(kamailio, gateway_factory):
    gw = gateway_factory(gateway_config(accounts=[account(kamailio, expires=10)]))
    gw.wait_log("sip_registered")
    kamailio.restart()  # state is in memory: the registration is gone
    assert not kamailio.is_registered("2001")
    kamailio.wait_registered("2001", timeout=20)  # the refresh registers again


def test_recovers_when_registrar_is_down_then_back(kamailio, gateway_factory):
    gw = gateway_factory(gateway_config(accounts=[account(kamailio, expires=10)]))
    gw.wait_log("sip_registered")
    kamailio.stop()
    failure = gw.wait_log("sip_registrar_unreachable", timeout=45)
    assert failure["retry_in_s"] > 0
    time.sleep(1)
    kamailio.start()
    kamailio.wait_registered("2001", timeout=60)
    assert gw.process.poll() is None
    assert gw.stop() == 0
