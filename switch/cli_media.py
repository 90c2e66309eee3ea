"""`softswitch media`: the media service as a process of its own (announcements, the busy
message, voicemail, the voicemail menu), for deployments that run it apart from the switch:

    softswitch media [--config FILE] [--listen HOST:PORT] [--database URL] [--data DIR]
                     [--http HOST:PORT|off]

It reads `[media]` of the configuration (listen, rtp_host, rtp_ports, max_session,
allowed_sources, secret — the same secret every proxy uses), keeps voicemail in the same
store as the switch nodes (`--database postgresql://…`: every node and media process sees
every message), and serves `/metrics` on `--http`. It prints where it listens:

    Media listening on sip:media@10.0.0.21:5062 (RTP 10.0.0.21 ports 20000-30000)
    HTTP listening on http://127.0.0.1:8090 (metrics at /metrics)

The proxy lists such processes in `[media] uri`; a media process that dies ends its calls
(the callers' dialogs with it go silent; their channels are released by the proxy's dialog
liveness check) and new calls go to the others.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from switch.config import HostPort, resolve_secret

__all__ = ["register"]

log = logging.getLogger("switch")


def register(sub: Any) -> None:
    from switch.cli import _address, _optional_address, add_config_options

    p = sub.add_parser("media", help="run the media service on its own")
    add_config_options(p)
    p.add_argument("--listen", type=_address, metavar="HOST:PORT", help="SIP (UDP+TCP)")
    p.add_argument("--database", metavar="URL", help="the store (default: SQLite in --data)")
    p.add_argument("--http", type=_optional_address, metavar="HOST:PORT", help="or 'off'")
    p.add_argument("--log-level", metavar="LEVEL")
    p.set_defaults(func=cmd_media)


def cmd_media(args: argparse.Namespace) -> int:
    from switch.cli import _run, config_from_args

    config = config_from_args(args)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return _run(_media(config, args))


async def _media(config: Any, args: argparse.Namespace) -> int:
    from media.ua.agent import MediaSettings
    from media.ua.app import MediaApp, MediaListen
    from media.ua.config import MediaConfig
    from media.ua.services import ServiceDeps
    from provisioning.services import Services
    from provisioning.services.voicemail import VoicemailRepo
    from provisioning.store import open_store
    from switch.prompt_source import StorePrompts

    section = dict(config.extra.get("media", {}))
    media_cfg = MediaConfig.from_section(section)
    host, port = (args.listen.host, args.listen.port) if args.listen else media_cfg.listen
    secret = resolve_secret(section.get("secret") or None, config.data_dir, "media-secret")
    store = await open_store(config.effective_database_url)
    app = MediaApp(
        listen=MediaListen(host=host, port=port),
        settings=MediaSettings(
            rtp_host=media_cfg.rtp_host or host, ports=media_cfg.rtp_ports,
            secret=secret.encode(), allowed_sources=media_cfg.allowed_sources,
            max_session=media_cfg.max_session,
        ),
        deps=ServiceDeps(voicemail=VoicemailRepo(store), prompts=StorePrompts(Services(store))),
    )  # fmt: skip
    runner = None
    try:
        await app.start()
        gc.collect()
        gc.freeze()  # the start-up heap is never scanned again: no full-collection pauses
        print(_listening(app), flush=True)
        http = args.http if args.http is not None else HostPort("127.0.0.1", 8090)
        if http != "off":
            runner = await _serve_metrics(app, http)
            host_, port_ = runner.addresses[0][:2]
            print(f"HTTP listening on http://{host_}:{port_} (metrics at /metrics)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    except OSError as exc:
        print(f"softswitch media: cannot listen: {exc}", file=sys.stderr)
        return 1
    finally:
        if runner is not None:
            await runner.cleanup()
        if app.address is not None:
            await app.stop()
        await store.close()
    return 0


def _listening(app: Any) -> str:
    ports = app.settings.ports
    return (
        f"Media listening on {app.uri} (RTP {app.settings.rtp_host}"
        f" ports {ports.first}-{ports.last + 1})"
    )


async def _serve_metrics(app: Any, http: HostPort) -> web.AppRunner:
    from prometheus_client import generate_latest

    async def metrics(_: web.Request) -> web.Response:
        # the media service's own metrics and its SIP endpoint's (two registries: the SIP
        # counters carry the switch's names, which a node's registry already holds)
        body = generate_latest(app.registry) + generate_latest(app.sip_metrics.registry)
        return web.Response(body=body, content_type="text/plain")

    web_app = web.Application()
    web_app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, http.host, http.port).start()
    return runner
