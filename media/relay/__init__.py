"""The media relay for recorded calls, driven over rtpengine's ng protocol.

A number with the recording option has the RTP of its calls pass through a relay the proxy
controls. The proxy speaks the ng protocol (`client.NgClient`) to either relay:

- the embedded relay (`embedded.EmbeddedRelay`, the default; `python -m media.relay.embedded`
  as its own process), which relays and records in Python; or
- rtpengine (Debian's `rtpengine-daemon`, userspace) with `--recording-method=pcap`, whose
  pcaps `pcap.convert_spool` turns into the same recordings after each call (why pcap and
  not the live fork: measurements in `pcap`'s docstring).

Either way a recording reaches a `sink.RecordingSink` as a two-channel 8 kHz WAV (caller
left, callee right, wall-clock aligned, `recorder.StereoRecorder`) plus a JSON sidecar.

Layers: `bencode`, `ng`, `transactions`, `server`, `core`, `calls`, `legs`, `query`,
`recorder`, `player`, `pcap`, `sink` are sans-IO (no asyncio; time is an argument); `client`
and `embedded` are the asyncio glue.
"""
