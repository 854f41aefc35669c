"""SIP accounts: the local (direct-call) account and registered PBX extensions.

pjsua refreshes a registration before it expires by itself; what it does not do to our liking
is recover: after a failed registration (registrar down, 5xx, 401/403) it either gives up or
retries at a fixed interval. We switch its retry off and retry with exponential backoff and
jitter instead, so a PBX coming back after an outage is not hit by every gateway at once, and
we log a wrong password as such, once per failure streak, not as an anonymous 401.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pjsua2 as pj
import structlog

from gateway.config import AccountConfig
from gateway.sip.limits import Integrity, integrity
from rtp.srtp import SUITES

if TYPE_CHECKING:
    from gateway.sip.stack import SipStack

log = structlog.get_logger("sip")

BACKOFF_FIRST_S = 2.0
BACKOFF_MAX_S = 120.0


@dataclass(frozen=True)
class IncomingInvite:
    """What the account knows of a new INVITE when pjsua offers it (read inside `onIncomingCall`)."""

    pj_call_id: int
    source: str  # "ip:port" the INVITE came from (not its headers: those lie); "" if unreadable
    integrity: Integrity  # whether pjsip received it whole (see gateway.sip.limits)


@dataclass
class RegistrationState:
    registered: bool = False
    last_code: int = 0
    last_reason: str = ""
    failures: int = 0
    expires_s: int = 0


class GatewayAccount(pj.Account):
    """One pjsua account; incoming calls on it go to `agent`."""

    def __init__(self, stack: SipStack, agent: str, name: str,
                 on_incoming: Callable[[GatewayAccount, IncomingInvite], None],
                 config: AccountConfig | None = None):
        super().__init__()
        self.stack = stack
        self.agent = agent
        self.name = name
        self.config = config
        self.state = RegistrationState()
        self._on_incoming = on_incoming
        self._retry_pending = False
        self._closing = False
        self.log = log.bind(account=name)

    # -- creation ------------------------------------------------------------------------------

    @classmethod
    def local(cls, stack: SipStack, agent: str, on_incoming) -> GatewayAccount:
        """The account for calls addressed to the gateway directly (no registration)."""
        s = stack.settings
        account = cls(stack, agent, "local", on_incoming)
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:voicegate@{_host(s.public_address)}:{s.listen_port}"
        _media_config(cfg, s.public_address, s.srtp)
        account.create(cfg, True)
        return account

    @classmethod
    def registered(cls, stack: SipStack, config: AccountConfig, on_incoming) -> GatewayAccount:
        account = cls(stack, config.agent, config.aor, on_incoming, config)
        cfg = pj.AccountConfig()
        cfg.idUri = config.aor
        cfg.regConfig.registrarUri = config.registrar
        cfg.regConfig.timeoutSec = config.register_expires_s
        cfg.regConfig.retryIntervalSec = 0  # our own backoff, see the module docstring
        cfg.regConfig.firstRetryIntervalSec = 0
        cfg.regConfig.delayBeforeRefreshSec = min(5, max(1, config.register_expires_s // 4))
        cfg.regConfig.dropCallsOnFail = False
        cfg.regConfig.unregWaitMsec = 2000
        if stack.settings.user_agent:  # only the registrar hears our name (SipStack sets no global one)
            cfg.regConfig.headers.append(user_agent_header(stack.settings.user_agent))
        cfg.sipConfig.proxies.append(f"{config.registrar};lr" if ";lr" not in config.registrar
                                     else config.registrar)
        cred = pj.AuthCredInfo("digest", "*", config.auth_username or config.username, 0, config.password)
        cfg.sipConfig.authCreds.append(cred)
        _media_config(cfg, stack.settings.public_address, stack.settings.srtp)
        account.create(cfg)
        account.log.info("sip_registering", registrar=config.registrar, expires_s=config.register_expires_s)
        return account

    # -- callbacks (SIP thread) ----------------------------------------------------------------

    def __del__(self) -> None:
        self.stack.released(f"account {self.name}")

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        """Only reads the INVITE: the call manager adopts the call now and answers it a turn later.

        pjsua frees its copy of the INVITE right after this callback returns; a final response
        sent from inside it can end the call first and free that copy twice (an abort for a
        late-offer INVITE), so nothing here may answer.
        """
        try:
            source = prm.rdata.srcAddress
        except Exception:
            source = ""
        try:
            whole = prm.rdata.wholeMsg.encode("utf-8", "surrogateescape")
            judged = integrity(whole)
        except Exception:  # unreadable as text: treat as the largest message, refused
            judged = Integrity.TOO_LARGE
        self._on_incoming(self, IncomingInvite(prm.callId, source, judged))

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        code, reason, expiration = prm.code, prm.reason, prm.expiration
        st = self.state
        st.last_code, st.last_reason = code, reason
        if self._closing:
            st.registered = False
            self.log.info("sip_unregistered", code=code)
            return
        if 200 <= code < 300 and expiration > 0:
            if not st.registered or st.failures:
                self.log.info("sip_registered", code=code, expires_s=expiration)
            st.registered, st.failures, st.expires_s = True, 0, expiration
            return
        was_registered = st.registered
        st.registered = False
        st.failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(st.failures - 1, 10)) * random.uniform(0.8, 1.2)
        fields = dict(code=code, reason=reason, retry_in_s=round(delay, 1), failures=st.failures,
                      was_registered=was_registered)
        if code in (401, 403, 407):
            self.log.error("sip_registration_rejected",
                           hint="check the account's username and password", **fields)
        elif code in (408, 503) or code >= 500 or code < 200:
            self.log.warning("sip_registrar_unreachable", **fields)
        else:
            self.log.warning("sip_registration_failed", **fields)
        self._schedule_retry(delay)

    def _schedule_retry(self, delay: float) -> None:
        if self._retry_pending:
            return
        self._retry_pending = True
        self.stack.call_later(delay, self._retry)

    def _retry(self) -> None:
        self._retry_pending = False
        if self._closing or self.state.registered:
            return
        try:
            self.setRegistration(True)
        except pj.Error as exc:  # e.g. PJSIP_EBUSY while a transaction is still running
            self.log.debug("sip_register_retry_busy", error=exc.info())
            self._schedule_retry(1.0)

    # -- shutdown (SIP thread) -----------------------------------------------------------------

    def unregister(self) -> bool:
        """Send REGISTER with Expires: 0. Returns whether there was anything to unregister."""
        self._closing = True
        if self.config is None or not self.state.registered:
            return False
        try:
            self.setRegistration(False)
            return True
        except pj.Error as exc:
            self.log.warning("sip_unregister_failed", error=exc.info())
            return False


def user_agent_header(value: str) -> pj.SipHeader:
    header = pj.SipHeader()
    header.hName = "User-Agent"
    header.hValue = value
    return header


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


_SRTP_USE = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
             "required": pj.PJMEDIA_SRTP_MANDATORY}


def _media_config(cfg: pj.AccountConfig, public_address: str, srtp: str = "off") -> None:
    """pjmedia must never send media: the loop transport opens no socket at all.

    SRTP is negotiated by pjsua (SDES only, and only the suites our RTP engine has), so it
    answers ``RTP/SAVP`` offers and, when required, refuses plain ones with 488; the keys it
    writes are replaced by the call's own (see :mod:`gateway.sip.sdp`).
    """
    cfg.mediaConfig.useLoopMedTp = True
    cfg.mediaConfig.enableLoopback = False
    cfg.mediaConfig.lockCodecEnabled = False
    cfg.mediaConfig.transportConfig.boundAddress = public_address
    cfg.mediaConfig.transportConfig.publicAddress = public_address
    cfg.mediaConfig.srtpUse = _SRTP_USE[srtp]
    # 0: SDES over any signalling transport.  Keys sent over plain UDP SIP can be read off the
    # wire, so the gateway warns at start when SRTP is on without a TLS listener.
    cfg.mediaConfig.srtpSecureSignaling = 0
    if srtp != "off":
        opt = cfg.mediaConfig.srtpOpt
        opt.keyings = pj.IntVector([pj.PJMEDIA_SRTP_KEYING_SDES])
        cryptos = pj.SrtpCryptoVector()
        for name in SUITES:
            crypto = pj.SrtpCrypto()
            crypto.name = name
            cryptos.append(crypto)
        opt.cryptos = cryptos
