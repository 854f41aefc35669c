"""The SDP rewrite that points the peer at our RTP engine instead of pjmedia."""

import pytest

from gateway.sdp import MediaAddress, SdpError, parse_address, rewrite_local_sdp

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
