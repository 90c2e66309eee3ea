"""The `softswitch` command (also `python -m switch`).

    softswitch serve [--config FILE] [--sip HOST:PORT] [--tls HOST:PORT] [--tls-cert PEM]
                     [--tls-key PEM] [--http HOST:PORT|off] [--seed FILE] [--data DIR]
                     [--log-level LEVEL] [--workers N]
    softswitch device release DEVICE_ID [--config FILE] [--http HOST:PORT] [--data DIR]
                     [--token TOKEN]

`serve` prints one line per listener to stdout once it is bound (port 0 shows the real
port), then serves until SIGINT/SIGTERM:

    SIP listening on udp+tcp 127.0.0.1:5060
    SIP listening on tls 127.0.0.1:5061
    HTTP listening on http://127.0.0.1:8080 (API at /v1, metrics at /metrics)

`--workers N` (switch/workers.py): N worker processes on the same ports, supervised by this
one; the default is one per core on shared (Redis) state and one on memory state, where more
is refused (exit code 2). With workers the lines are printed once every worker serves, plus
"Workers: N".

Subcommands of other modules: `build_parser()` imports `switch.cli_provisioning` when it exists
and calls its `register(subparsers)`; each subcommand sets `func=callable(args) -> int` with
`parser.set_defaults(func=...)` (the same convention as below). Load the configuration in a
subcommand with `config_from_args(args)` after adding the common options with
`add_config_options(parser)`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import stat
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from switch.config import Config, ConfigError, HostPort, load_config, parse_host_port

__all__ = ["add_config_options", "build_parser", "config_from_args", "main"]

EXTENSION_MODULES = (
    "switch.cli_provisioning",
    "switch.cli_media",
    "switch.cli_relay",
)  # register(subparsers)

log = logging.getLogger("switch")


def _address(text: str) -> HostPort:
    try:
        return parse_host_port(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _optional_address(text: str) -> HostPort | str:
    return "off" if text.lower() in ("off", "none", "") else _address(text)


def add_config_options(p: argparse.ArgumentParser) -> None:
    """--config and --data, common to every subcommand that needs the configuration."""
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    p.add_argument("--data", type=Path, metavar="DIR", help="data directory (default ./data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softswitch", description="SIP softswitch")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_device(sub)
    for name in EXTENSION_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the switch")
    add_config_options(p)
    p.add_argument("--sip", type=_address, metavar="HOST:PORT", help="UDP+TCP listen address")
    p.add_argument("--tls", type=_address, metavar="HOST:PORT", help="TLS listen address")
    p.add_argument("--tls-cert", type=Path, metavar="PEM")
    p.add_argument("--tls-key", type=Path, metavar="PEM")
    p.add_argument("--http", type=_optional_address, metavar="HOST:PORT", help="or 'off'")
    p.add_argument(
        "--seed",
        type=Path,
        metavar="FILE",
        help="seed file (TOML), imported when the store is empty",
    )
    p.add_argument(
        "--database", metavar="URL", help="postgresql://… (default: SQLite under the data dir)"
    )
    p.add_argument("--log-level", metavar="LEVEL")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (default: one per core on Redis state, 1 on memory state)",
    )
    p.set_defaults(func=cmd_serve)


def _add_device(sub: Any) -> None:
    p = sub.add_parser("device", help="operate on IDs (devices) of the running switch")
    dsub = p.add_subparsers(dest="device_command", required=True, metavar="ACTION")
    r = dsub.add_parser("release", help="release the logged-in device of an ID")
    r.add_argument("device_id", metavar="DEVICE_ID")
    add_config_options(r)
    r.add_argument("--http", type=_address, metavar="HOST:PORT", help="the switch's HTTP")
    r.add_argument("--token", help="admin token (default: config, else <data>/admin-token)")
    r.set_defaults(func=cmd_device_release)


def config_from_args(args: argparse.Namespace) -> Config:
    http = getattr(args, "http", None)
    overrides: dict[str, Any] = {
        "sip": getattr(args, "sip", None),
        "tls": getattr(args, "tls", None),
        "tls_cert": getattr(args, "tls_cert", None),
        "tls_key": getattr(args, "tls_key", None),
        "seed": getattr(args, "seed", None),
        "data_dir": getattr(args, "data", None),
        "database_url": getattr(args, "database", None),
        "log_level": getattr(args, "log_level", None),
    }
    if http == "off":
        overrides["http"] = None
        config = load_config(args.config, overrides)
        return config.replace(http=None)
    overrides["http"] = http
    return load_config(args.config, overrides)


# --------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Everything the switch creates is its own: the database (HA1 hashes are
    # password-equivalent for digest), its -wal/-shm, the generated secrets.
    os.umask(0o077)
    secure_data_files(config)
    from switch.workers import WorkersError, check_workers, default_workers

    count = args.workers if args.workers is not None else default_workers(config.state_url)
    try:
        check_workers(count, config.state_url)
    except WorkersError as exc:
        print(f"softswitch: {exc}", file=sys.stderr)
        return 2
    if count == 1:
        return _run(_serve(config))
    return _serve_workers(config, count)


def _serve_workers(config: Config, count: int) -> int:
    """The supervisor of `count` workers (switch/workers.py)."""
    from provisioning.errors import ProvisioningError
    from provisioning.seed import SeedError
    from switch.node import Node
    from switch.workers import bind_workers, listening_ports, supervise

    try:
        _run(Node.prepare(config))
    except (SeedError, ProvisioningError) as exc:
        print(f"softswitch: cannot load the seed: {exc}", file=sys.stderr)
        return 2
    try:
        sockets = bind_workers(config, count)
    except OSError as exc:
        print(f"softswitch: cannot listen: {exc}", file=sys.stderr)
        return 1

    def serve_one(runtime: Any, ready: Callable[[], None]) -> int:
        return _run(_serve(config, runtime, ready))

    def announce() -> None:
        bound = listening_ports(sockets)
        http = bound.pop("http", None)
        app = argparse.Namespace(sip_addresses=bound, http_address=http, media=None)
        for line in [*listening_lines(app), f"Workers: {count}"]:
            print(line, flush=True)

    return supervise(sockets, config.sip.host, serve_one, announce)


def secure_data_files(config: Config) -> list[Path]:
    """Make the data directory 0700 and every file in it (and the SQLite database, wherever
    it is) 0600, with a warning for each one that was open to others; returns those fixed."""
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = [config.data_dir, *sorted(config.data_dir.rglob("*"))]
    url = config.effective_database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        db = Path(url.removeprefix("sqlite:///"))
        paths += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return [p for p in dict.fromkeys(paths) if _make_private(p)]


def _make_private(path: Path) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
        return False
    private = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
    path.chmod(private)
    log.warning(
        "%s was mode %04o, readable by other users; now %04o",
        path,
        stat.S_IMODE(st.st_mode),
        private,
    )
    return True


def _run(coro: Any) -> int:
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result: int = runner.run(coro)
        return result


async def _serve(
    config: Config, worker: Any = None, ready: Callable[[], None] | None = None
) -> int:
    """One node in this process: alone, or as `worker` (then `ready()` instead of the lines)."""
    from provisioning.errors import ProvisioningError
    from provisioning.seed import SeedError
    from switch.node import Node

    try:
        node = await Node.open(config, worker)
    except (SeedError, ProvisioningError) as exc:
        print(f"softswitch: cannot load the seed: {exc}", file=sys.stderr)
        return 2
    try:
        await node.start()
    except OSError as exc:
        print(f"softswitch: cannot listen: {exc}", file=sys.stderr)
        await node.stop()
        return 1
    if ready is not None:
        ready()
    else:
        for line in listening_lines(node.app):
            print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await node.stop()
    return 0


def listening_lines(app: Any) -> list[str]:
    lines = []
    udp = app.sip_addresses.get("udp")
    if udp is not None:
        lines.append(f"SIP listening on udp+tcp {HostPort(udp[0], udp[1])}")
    tls = app.sip_addresses.get("tls")
    if tls is not None:
        lines.append(f"SIP listening on tls {HostPort(tls[0], tls[1])}")
    if app.http_address is not None:
        http = HostPort(*app.http_address)
        lines.append(f"HTTP listening on http://{http} (API at /v1, metrics at /metrics)")
    media = getattr(app, "media", None)
    if media is not None and media.address is not None:
        ports = media.settings.ports
        lines.append(
            f"Media listening on {media.uri} (RTP {media.settings.rtp_host}"
            f" ports {ports.first}-{ports.last + 1})"
        )
    return lines


# --------------------------------------------------------------------------- device
def cmd_device_release(args: argparse.Namespace) -> int:
    """POST /admin/devices/{id}/release on the running switch (the in-memory state lives in
    that process; a Redis-backed deployment could release directly, but one path is
    simpler)."""
    from switch.config import resolve_secret

    config = config_from_args(args)
    if config.http is None:
        print("softswitch: the switch has no HTTP listener configured", file=sys.stderr)
        return 2
    token = args.token or config.admin_token
    if not token:
        path = config.data_dir / "admin-token"
        if not path.exists():
            print(f"softswitch: no admin token (looked in {path})", file=sys.stderr)
            return 2
        token = resolve_secret(None, config.data_dir, "admin-token")
    url = (
        f"http://{config.http}/admin/devices/{urllib.parse.quote(args.device_id, safe='')}/release"
    )
    req = urllib.request.Request(
        url, method="POST", headers={"Authorization": f"Bearer {token}"}, data=b""
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        print(f"softswitch: release failed: HTTP {exc.code} {exc.read().decode()}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"softswitch: cannot reach the switch at {url}: {exc}", file=sys.stderr)
        return 1
    print(f"released {args.device_id} ({body.get('bindings', 0)} bindings dropped)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"softswitch: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
