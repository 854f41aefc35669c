"""SRTP and SRTCP (RFC 3711) for one call's media, keyed by SDES (RFC 4568), on libsrtp via pylibsrtp.

Why our own: the gateway's RTP engine owns the media sockets (pjmedia only negotiates), so the
encryption has to live where the packets are built and read.  The keys come from the SDP
``a=crypto`` lines signalling exchanged; this module only knows suites and key bytes, nothing
of SDP or SIP.

One :class:`SrtpContext` holds two libsrtp sessions: one that protects what we send (our key,
any outbound SSRC) and one that unprotects what the peer sends (its key, any inbound SSRC, so a
peer that changes SSRC mid-call is still decrypted).  libsrtp keeps the rollover counter and the
replay window per SSRC.  A packet that fails authentication or is replayed raises
:class:`SrtpError`; the caller counts and drops it, never plays it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import pylibsrtp

__all__ = ["SUITES", "SrtpContext", "SrtpError", "SrtpKeys", "decode_inline_key", "encode_inline_key"]


@dataclass(frozen=True)
class _Suite:
    profile: int
    key_length: int  # master key + master salt, in bytes (what the SDES inline parameter carries)


# The RFC 4568 suites every SIP phone and PBX offers; both use a 128-bit key and a 112-bit salt.
SUITES: dict[str, _Suite] = {
    "AES_CM_128_HMAC_SHA1_80": _Suite(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "AES_CM_128_HMAC_SHA1_32": _Suite(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
}


class SrtpError(ValueError):
    """A packet that does not authenticate, is replayed, or keys that do not fit the suite."""


@dataclass(frozen=True)
class SrtpKeys:
    """The negotiated suite and both directions' master key||salt."""

    suite: str
    tx_key: bytes  # ours: what we protect with (the key we put in our SDP)
    rx_key: bytes  # the peer's: what we unprotect with (the key in its SDP)

    def __post_init__(self) -> None:
        suite = SUITES.get(self.suite)
        if suite is None:
            raise SrtpError(f"unsupported SRTP suite {self.suite!r} (supported: {', '.join(SUITES)})")
        for name, key in (("our", self.tx_key), ("the peer's", self.rx_key)):
            if len(key) != suite.key_length:
                raise SrtpError(f"{self.suite} needs a {suite.key_length}-byte key, {name} has {len(key)}")

    def __repr__(self) -> str:  # keys never reach a log line through a repr
        return f"SrtpKeys(suite={self.suite!r})"


def encode_inline_key(key: bytes) -> str:
    """The SDES ``inline:`` value for ``key`` (base64 with padding, as RFC 4568 section 6.1 says)."""
    return base64.b64encode(key).decode("ascii")


def decode_inline_key(text: str, suite: str) -> bytes:
    """Key bytes from an SDES ``inline:`` value (lifetime and MKI already cut off); strict."""
    spec = SUITES.get(suite)
    if spec is None:
        raise SrtpError(f"unsupported SRTP suite {suite!r}")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SrtpError(f"SDES key is not base64: {exc}") from None
    if len(key) != spec.key_length:
        raise SrtpError(f"{suite} needs a {spec.key_length}-byte key, the SDES key has {len(key)}")
    return key


class SrtpContext:
    """Protect outgoing and unprotect incoming RTP and RTCP for one call (one thread: the media clock)."""

    def __init__(self, keys: SrtpKeys) -> None:
        self.keys = keys
        self._tx = _session(keys.tx_key, keys.suite, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._rx = _session(keys.rx_key, keys.suite, pylibsrtp.Policy.SSRC_ANY_INBOUND)

    def rekey(self, keys: SrtpKeys) -> None:
        """Apply a re-negotiation: only a direction whose key or suite changed starts afresh.

        Keeping an unchanged direction's session keeps its rollover counter: a fresh outbound
        session after 65536 packets would restart at ROC 0 while the peer's receiver is at 1.
        """
        old, self.keys = self.keys, keys
        if (keys.suite, keys.tx_key) != (old.suite, old.tx_key):
            self._tx = _session(keys.tx_key, keys.suite, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        if (keys.suite, keys.rx_key) != (old.suite, old.rx_key):
            self._rx = _session(keys.rx_key, keys.suite, pylibsrtp.Policy.SSRC_ANY_INBOUND)

    def protect(self, rtp: bytes) -> bytes:
        return self._tx.protect(rtp)

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return self._tx.protect_rtcp(rtcp)

    def unprotect(self, srtp: bytes) -> bytes:
        try:
            return self._rx.unprotect(srtp)
        except pylibsrtp.Error as exc:
            raise SrtpError(f"SRTP packet rejected: {exc}") from None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        try:
            return self._rx.unprotect_rtcp(srtcp)
        except pylibsrtp.Error as exc:
            raise SrtpError(f"SRTCP packet rejected: {exc}") from None


def _session(key: bytes, suite: str, ssrc_type: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=SUITES[suite].profile))
