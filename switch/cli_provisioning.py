"""The provisioning subcommands of `softswitch`:

    softswitch db upgrade                       create the schema / apply pending migrations
    softswitch token create --operator          print a new operator API token
    softswitch token create --tenant ID         print a new token for one tenant
    softswitch tenant import FILE [--replace]   write a TOML seed file into the store

Each takes `--database URL`, `--data DIR` and `--config FILE` exactly as `serve` does: the URL
given, else `[data] database_url` of the configuration file, else SQLite at
DIR/softswitch.db (DIR defaults to ./data). The switch CLI (switch/cli.py) calls
`register(subparsers)`; `python -m switch.cli_provisioning …` runs the same commands alone.

Exit status: 0 done, 1 refused by the service or store unavailable, 2 bad usage or input.
Only the token goes to stdout (so `TOKEN=$(softswitch token create --operator)` works);
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from provisioning.errors import ProvisioningError
from provisioning.seed import SeedError, load_seed
from switch.config import ConfigError, load_config

__all__ = [
    "database_url",
    "main",
    "register",
    "run_db_upgrade",
    "run_tenant_import",
    "run_token_create",
]

Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        metavar="URL",
        default=None,
        help="sqlite:///path or postgresql://… (default: SQLite under --data)",
    )
    parser.add_argument(
        "--data", metavar="DIR", type=Path, default=None, help="data directory (default ./data)"
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path, default=None, help="TOML configuration file"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `db`, `token` and `tenant` to the `softswitch` command. Each leaf parser sets
    `args.run`, a coroutine function `(args) -> exit status`, and `args.func = run`, the
    switch CLI's convention: `args.func(args)` runs it and returns the exit status."""
    db = subparsers.add_parser("db", help="provisioning database").add_subparsers(
        dest="db_command", required=True
    )
    upgrade = db.add_parser("upgrade", help="create the schema or apply pending migrations")
    _common(upgrade)
    upgrade.set_defaults(run=run_db_upgrade, func=run)

    token = subparsers.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", required=True
    )
    create = token.add_parser("create", help="create an API token and print it")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--operator", action="store_true", help="an operator token")
    who.add_argument("--tenant", metavar="ID", help="a token for this tenant only")
    create.add_argument("--label", default=None, help="a note to recognise the token")
    _common(create)
    create.set_defaults(run=run_token_create, func=run)

    tenant = subparsers.add_parser("tenant", help="tenants").add_subparsers(
        dest="tenant_command", required=True
    )
    imp = tenant.add_parser("import", help="write a TOML seed file into the store")
    imp.add_argument("file", type=Path, help="seed file (format: README.md, 'Seed file')")
    imp.add_argument(
        "--replace",
        action="store_true",
        help="replace tenants that already exist instead of refusing",
    )
    _common(imp)
    imp.set_defaults(run=run_tenant_import, func=run)


def database_url(args: argparse.Namespace) -> str:
    """--database, else the configuration file's, else SQLite under --data (or ./data)."""
    config = load_config(args.config, {"database_url": args.database, "data_dir": args.data})
    url = config.effective_database_url
    if url.startswith("sqlite:") and ":memory:" not in url:
        # sqlite:///relative/path or sqlite:////absolute/path (see store.open_store)
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


async def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from provisioning.store import open_store

    return await open_store(database_url(args))


async def run_db_upgrade(args: argparse.Namespace) -> int:
    store = await _open(args)
    await store.close()
    print(f"database is up to date: {_redact(database_url(args))}", file=sys.stderr)
    return 0


async def run_token_create(args: argparse.Namespace) -> int:
    from provisioning.services import Principal, Services

    store = await _open(args)
    try:
        created = await Services(store).tokens.create_token(
            Principal.operator(),
            scope="operator" if args.operator else "tenant",
            tenant_id=None if args.operator else args.tenant,
            label=args.label,
        )
    finally:
        await store.close()
    scope = "operator" if args.operator else f"tenant {args.tenant}"
    print(f"created {scope} token {created.info.id} (shown once):", file=sys.stderr)
    print(created.token)
    return 0


async def run_tenant_import(args: argparse.Namespace) -> int:
    from provisioning.services import import_seed

    seed = load_seed(args.file)  # SeedError before touching the store
    store = await _open(args)
    try:
        result = await import_seed(store, seed, replace=args.replace)
    finally:
        await store.close()
    print(
        f"imported {result.tenants} tenant(s), {result.devices} ID(s), {result.numbers} "
        f"number(s), {result.gateways} gateway(s)"
        + (f"; replaced {', '.join(result.replaced)}" if result.replaced else ""),
        file=sys.stderr,
    )
    return 0


def _redact(url: str) -> str:
    """Hide a password in a PostgreSQL URL."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, userinfo = head.partition("//")
    return f"{scheme}//{userinfo.split(':', 1)[0]}:***@{tail}"


def run(args: argparse.Namespace) -> int:
    """Run the coroutine a leaf parser chose, mapping failures to exit statuses."""
    runner: Runner = args.run
    try:
        return asyncio.run(runner(args))
    except (ConfigError, SeedError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ProvisioningError as exc:
        print(f"error: {exc.error_id}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="softswitch", description=__doc__.split("\n")[0])
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
