"""Print what a newcomer needs to try the demo that `make run` serves: the demo IDs with their
passwords (the demo seed keeps them in clear; real seeds need not), where to register, and a
copy-paste carrier call with the repository's SIPp scenario. Reads the seed file only."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

SCENARIO = "tests/sipp/uac_call.xml"


def main(seed_path: str) -> None:
    seed = tomllib.loads(Path(seed_path).read_text())
    realm = seed.get("realm", "softswitch.local")
    gw = (seed.get("gateways") or [{}])[0]
    print("=" * 78)
    print(f"Demo tenant (from {seed_path}); register a softphone to 127.0.0.1:5060, UDP or TCP,")
    print(f"realm {realm!r}:")
    for tenant in seed.get("tenants", []):
        for d in tenant.get("devices", []):
            user = d.get("username", d["id"])
            print(
                f"  {user:<12} password {d.get('password', '(hash only)'):<20} {d['kind']:<5}"
                f" presents {d.get('presented_number', '-')}"
            )
        numbers = [n["number"] for n in tenant.get("numbers", [])]
    print("Devices call each other by username (sip:demo-app@127.0.0.1).")
    if gw and numbers:
        src = (gw.get("allowed_sources") or ["127.0.0.2"])[0]
        print(f"A carrier call to {numbers[0]} (rings its group; voicemail if nobody answers):")
        print(f"  sipp -sf {SCENARIO} -i {src} -p 5070 -s {numbers[0].replace('-', '')} \\")
        print("       -key caller 0312345678 -m 1 127.0.0.1:5060")
    print("=" * 78, flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "deploy/demo-seed.toml")
