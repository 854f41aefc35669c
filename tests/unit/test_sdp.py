"""The SDP rewrite that points the peer at our RTP engine instead of pjmedia."""

import base64

import pytest

from gateway.sip.sdp import (
    MediaAddress,
    SdpError,
    audio_crypto_lines,
    parse_address,
    redact_keys,
    rewrite_local_sdp,
    sdes_keys,
)

PJSUA_ANSWER = (
    "v=0\r\n"
    "o=- 3917347329 3917347330 IN IP4 10.9.9.9\r\n"
    "s=pjmedia\r\n"
    "b=AS:84\r\n"
    "t=0 0\r\n"
    "a=X-nat:0\r\n"
    "m=audio 4000 RTP/AVP 0 101\r\n"
    "c=IN IP4 10.9.9.9\r\n"
    "b=TIAS:64000\r\n"
    "a=rtcp:4001 IN IP4 10.9.9.9\r\n"
    "a=sendrecv\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ssrc:123456 cname:abc\r\n"
    "m=video 4002 RTP/AVP 96\r\n"
    "c=IN IP4 10.9.9.9\r\n"
)


def test_rewrite_points_audio_at_our_port_and_address():
    out = rewrite_local_sdp(PJSUA_ANSWER, MediaAddress("127.0.0.1", 31000))
    lines = out.split("\r\n")
    assert "o=- 3917347329 3917347330 IN IP4 127.0.0.1" in lines
    assert "m=audio 31000 RTP/AVP 0 101" in lines
    assert "a=rtcp:31001" in lines
    assert all(line == "c=IN IP4 127.0.0.1" for line in lines if line.startswith("c="))
    assert not any(line.startswith("a=ssrc") for line in lines)
    assert "m=video 0 RTP/AVP 96" in lines  # only one audio stream is carried
    assert "a=sendrecv" in lines and "a=fmtp:101 0-16" in lines
    assert "10.9.9.9" not in out
    assert out.endswith("\r\n")


def test_rewrite_ipv6():
    out = rewrite_local_sdp(PJSUA_ANSWER, MediaAddress("::1", 31002))
    assert "c=IN IP6 ::1" in out and "IN IP6 ::1\r\n" in out


@pytest.mark.parametrize("bad", ["", "o=- 1 1 IN IP4 1.2.3.4\r\n", "v=0\r\nm=audio\r\n", "v=0\r\ns=x\r\n"])
def test_rewrite_rejects_unusable_sdp(bad):
    with pytest.raises(SdpError):
        rewrite_local_sdp(bad, MediaAddress("127.0.0.1", 31000))


def test_parse_address():
    assert parse_address("127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert parse_address("[::1]:4000") == ("::1", 4000)
    with pytest.raises(SdpError):
        parse_address("127.0.0.1")


# --------------------------------------------------------------------------- SDES


def _sdp(profile: str, *crypto: str) -> str:
    lines = ["v=0", "o=- 1 2 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
             f"m=audio 4000 {profile} 0 101", *crypto, "a=sendrecv", "m=video 0 RTP/AVP 96"]
    return "\r\n".join(lines) + "\r\n"


KEY_A = bytes(range(30))
KEY_B = bytes(range(100, 130))
INLINE_A = base64.b64encode(KEY_A).decode()
INLINE_B = base64.b64encode(KEY_B).decode()


def test_rewrite_puts_our_key_in_every_supported_crypto_line_and_drops_the_rest():
    offer = _sdp("RTP/SAVP", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_B}|2^20",
                 "a=crypto:2 AES_256_CM_HMAC_SHA1_80 inline:" + "A" * 64,
                 f"a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{INLINE_B}")
    out = rewrite_local_sdp(offer, MediaAddress("127.0.0.1", 31000), srtp_key=KEY_A)
    crypto = audio_crypto_lines(out)
    assert [(c.tag, c.suite) for c in crypto] == [(1, "AES_CM_128_HMAC_SHA1_80"), (3, "AES_CM_128_HMAC_SHA1_32")]
    assert all(c.key() == KEY_A for c in crypto)
    assert INLINE_B not in out and "m=audio 31000 RTP/SAVP 0 101" in out


@pytest.mark.parametrize("local_offers", [True, False])
def test_sdes_keys_from_offer_and_answer_either_way_round(local_offers):
    offer = _sdp("RTP/SAVP", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_A}",
                 f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{INLINE_A}")
    answer = _sdp("RTP/SAVP", f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{INLINE_B}|2^31")
    local, remote = (offer, answer) if local_offers else (answer, offer)
    keys = sdes_keys(local, remote)
    assert keys is not None and keys.suite == "AES_CM_128_HMAC_SHA1_32"
    assert keys.tx_key == (KEY_A if local_offers else KEY_B)
    assert keys.rx_key == (KEY_B if local_offers else KEY_A)


def test_plain_answer_to_an_optional_offer_means_plain_rtp():
    offer = _sdp("RTP/AVP", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_A}")
    assert sdes_keys(offer, _sdp("RTP/AVP")) is None
    assert sdes_keys(_sdp("RTP/AVP"), _sdp("RTP/AVP")) is None


@pytest.mark.parametrize("line,why", [
    (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_B}|2^20|1:4", "MKI"),
    (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_B} UNENCRYPTED_SRTP", "session parameters"),
    (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_B};inline:{INLINE_A}", "several keys"),
    ("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=", "30-byte"),
    ("a=crypto:1 AES_CM_128_HMAC_SHA1_80 uri:https://keys", "key method"),
    ("a=crypto:x AES_CM_128_HMAC_SHA1_80", "malformed"),
])
def test_an_agreed_key_we_cannot_use_is_an_error(line, why):
    ours = _sdp("RTP/SAVP", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_A}")
    with pytest.raises(SdpError, match=why):
        sdes_keys(ours, _sdp("RTP/SAVP", line))


def test_sip_traces_and_sdp_errors_never_carry_srtp_keys():
    line = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_A}|2^20\r\na=crypto:2 X inline:{INLINE_B}"
    out = redact_keys(line)
    assert INLINE_A not in out and INLINE_B not in out and out.count("inline:<redacted>") == 2
    with pytest.raises(SdpError) as err:
        sdes_keys(_sdp("RTP/SAVP", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE_A}"),
                  _sdp("RTP/SAVP", f"a=crypto:1x AES_CM_128_HMAC_SHA1_80 inline:{INLINE_B}"))
    assert INLINE_B not in str(err.value) and "inline:<redacted>" in str(err.value)
