"""`softswitch relay`: the embedded RTP relay (ng protocol, recordings) as a process of its own,
`media.relay.embedded.main` with its options:

    softswitch relay [--ng HOST:PORT] [--media-address ADDR] [--ports A-B] [--recordings DIR]
                     [--media-dir DIR] [--idle-timeout S] [--max-age S] [--sync-every S]

It prints `relay listening ng=HOST:PORT` once bound and runs until SIGTERM (recordings in
progress are finished). The switch runs it itself by default (`[media] relay = "embedded"`,
switch/relaying.py), with `--die-with-parent PID`: the kernel sends it SIGTERM when the switch
dies (Linux PR_SET_PDEATHSIG), so a killed switch never leaves a relay holding its ports.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from typing import Any

__all__ = ["register"]

_PR_SET_PDEATHSIG = 1


# The options of `media.relay.embedded.main`, passed on as given (name, metavar, help).
_PASSED = (
    ("--ng", "HOST:PORT", "ng control socket (default 127.0.0.1:2223; port 0: any)"),
    ("--media-address", "ADDR", "address RTP is relayed on and written into SDP"),
    ("--ports", "A-B", "RTP port range"),
    ("--recordings", "DIR", "directory of the recordings"),
    ("--media-dir", "DIR", "directory the `play media` files are in"),
    ("--idle-timeout", "S", "a call with no packet and no signalling this long is deleted"),
    ("--max-age", "S", "a call older than this is deleted"),
    ("--sync-every", "S", "WAV header patch period"),
)


def register(sub: Any) -> None:
    p = sub.add_parser("relay", help="run the embedded RTP relay on its own")
    for name, metavar, text in _PASSED:
        p.add_argument(name, metavar=metavar, help=text)
    p.add_argument("--no-uvloop", action="store_true")
    p.add_argument(
        "--die-with-parent", type=int, metavar="PID", help="exit when process PID (the switch) dies"
    )
    p.set_defaults(func=cmd_relay)


def cmd_relay(args: argparse.Namespace) -> int:
    from media.relay.embedded import main

    if args.die_with_parent is not None:
        die_with(args.die_with_parent)
    argv = []
    for name, _, _ in _PASSED:
        value = getattr(args, name.removeprefix("--").replace("-", "_"))
        if value is not None:
            argv.append(f"{name}={value}")
    if args.no_uvloop:
        argv.append("--no-uvloop")
    return main(argv)


def die_with(parent: int) -> None:
    """SIGTERM when the parent dies; exit at once if it is already gone (it may have died
    between the fork and this call)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        raise SystemExit(0)
