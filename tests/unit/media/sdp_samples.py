"""Offers as real endpoints write them (shapes taken from common phones and SIPp)."""

from __future__ import annotations

# baresip-style: several codecs, PCMA before PCMU, telephone-event 101, rtcp-mux offer
BARESIP = (
    "v=0\r\n"
    "o=- 1431870546 3621418207 IN IP4 192.0.2.10\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 10172 RTP/AVP 96 8 0 101\r\n"
    "b=AS:64\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 stereo=1;sprop-stereo=1\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=rtcp-mux\r\n"
    "a=sendrecv\r\n"
    "a=label:1\r\n"
)

# SIPp's uac_pcap scenario SDP: LF line ends, no rtpmap for the static type
SIPP = (
    "v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio 6000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
)

# A desk phone offering audio and video, telephone-event on 98, ptime 30, media-level c=
DESK_AV = (
    "v=0\r\n"
    "o=GS 8000 8000 IN IP4 198.51.100.7\r\n"
    "s=SIP Call\r\n"
    "c=IN IP4 198.51.100.7\r\n"
    "t=0 0\r\n"
    "m=audio 5004 RTP/AVP 0 18 98\r\n"
    "c=IN IP4 198.51.100.8\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=rtpmap:98 telephone-event/8000\r\n"
    "a=fmtp:98 0-16\r\n"
    "a=ptime:30\r\n"
    "a=rtcp:5005 IN IP4 198.51.100.8\r\n"
    "m=video 5006 RTP/AVP 99\r\n"
    "a=rtpmap:99 H264/90000\r\n"
)

# RFC 2543 hold by an old phone: c=0.0.0.0, no direction attribute
OLD_HOLD = (
    "v=0\r\no=- 5 6 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8\r\n"
)

# RFC 3264 §8.4 hold: sendonly
HOLD_SENDONLY = (
    "v=0\r\no=- 5 7 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
)

# nothing we can decode
ONLY_G729 = (
    "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
)

# IPv6, dynamic payload type for PCMA
IPV6_DYNAMIC = (
    "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n"
    "m=audio 7078 RTP/AVP 112 100\r\na=rtpmap:112 pcma/8000\r\n"
    "a=rtpmap:100 telephone-event/8000\r\n"
)

# secure RTP first, then an audio stream we can take
SAVP_THEN_AVP = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 3000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:xyz\r\n"
    "m=audio 3002 RTP/AVP 0\r\n"
)
