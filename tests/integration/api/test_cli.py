"""`softswitch db upgrade`, `token create` and `tenant import`, run as the real command
(the installed entry point, a subprocess), then checked through the API on the same store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provisioning.services import Services
from provisioning.store import open_store

from .conftest import make_api

REPO = Path(__file__).resolve().parents[3]
SOFTSWITCH = Path(sys.executable).with_name("softswitch")
DEMO = REPO / "deploy" / "demo-seed.toml"


def softswitch(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SOFTSWITCH), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_db_upgrade_on_an_empty_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    assert tables(db) == set()
    r = softswitch("db", "upgrade", "--database", f"sqlite:///{db}")
    assert r.returncode == 0, r.stderr
    assert {"tenants", "devices", "numbers"} <= tables(db)
    again = softswitch("db", "upgrade", "--database", f"sqlite:///{db}")  # idempotent
    assert again.returncode == 0, again.stderr


def test_default_database_is_sqlite_under_data(tmp_path: Path) -> None:
    r = softswitch("db", "upgrade", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "tenants" in tables(tmp_path / "data" / "softswitch.db")
    r = softswitch("db", "upgrade", "--data", str(tmp_path / "elsewhere"))
    assert r.returncode == 0 and (tmp_path / "elsewhere" / "softswitch.db").exists()


def test_config_file_names_the_database(tmp_path: Path) -> None:
    db = tmp_path / "from-config.db"
    conf = tmp_path / "softswitch.toml"
    conf.write_text(f'[data]\ndatabase_url = "sqlite:///{db}"\n')
    r = softswitch("db", "upgrade", "--config", str(conf))
    assert r.returncode == 0, r.stderr
    assert "tenants" in tables(db)
    bad = softswitch("db", "upgrade", "--config", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and "error" in bad.stderr


async def test_token_create_prints_a_token_that_works(tmp_path: Path, aiohttp_client: Any) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    imported = softswitch("tenant", "import", str(DEMO), "--database", url)
    assert imported.returncode == 0, imported.stderr
    op = softswitch("token", "create", "--operator", "--label", "ci", "--database", url)
    assert op.returncode == 0, op.stderr
    operator_token = op.stdout.strip()
    assert operator_token and "\n" not in operator_token  # the token alone on stdout
    tenant = softswitch("token", "create", "--tenant", "demo", "--database", url)
    assert tenant.returncode == 0, tenant.stderr
    tenant_token = tenant.stdout.strip()
    store = await open_store(url)
    try:
        api = await make_api(Services(store), aiohttp_client)
        assert (await api.get("/v1/gateways", token=operator_token)).status == 200
        assert (await api.get("/v1/tenants/demo", token=tenant_token)).status == 200
        assert (await api.get("/v1/gateways", token=tenant_token)).status == 403
        assert (await api.get("/v1/gateways", token=operator_token + "x")).status == 401
    finally:
        await store.close()
    nobody = softswitch("token", "create", "--tenant", "nobody", "--database", url)
    assert nobody.returncode == 1 and "not-found" in nobody.stderr


async def test_tenant_import_loads_the_demo_tenant(tmp_path: Path, aiohttp_client: Any) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    r = softswitch("tenant", "import", str(DEMO), "--database", url)
    assert r.returncode == 0, r.stderr
    assert "1 tenant(s), 3 ID(s), 2 number(s), 1 gateway(s)" in r.stderr
    store = await open_store(url)
    try:
        api = await make_api(Services(store), aiohttp_client)
        tenant = (await api.get("/v1/tenants/demo")).body
        assert tenant["name"] == "Demo K.K." and tenant["identity_verified"] is True
        assert tenant["holidays"] == ["2026-12-31", "2027-01-01"]
        devices = (await api.get("/v1/tenants/demo/devices")).body["items"]
        assert sorted(d["id"] for d in devices) == ["demo-app", "demo-app2", "demo-desk"]
        numbers = {
            n["number"]: n for n in (await api.get("/v1/tenants/demo/numbers")).body["items"]
        }
        assert numbers["+81355500100"]["voicemail_ring_time"] == 20
        assert numbers["+81355500101"]["ring_group"] == ["demo-app2"]
        assert (await api.get("/v1/realm")).body == {"realm": "softswitch.local"}
    finally:
        await store.close()
    twice = softswitch("tenant", "import", str(DEMO), "--database", url)
    assert twice.returncode == 1 and "id-taken" in twice.stderr
    replaced = softswitch("tenant", "import", str(DEMO), "--replace", "--database", url)
    assert replaced.returncode == 0 and "replaced demo" in replaced.stderr


def test_tenant_import_refuses_a_bad_seed(tmp_path: Path) -> None:
    seed = tmp_path / "bad.toml"
    seed.write_text('[[tenants]]\nid = "x"\n')  # no contract number
    r = softswitch("tenant", "import", str(seed), "--data", str(tmp_path))
    assert r.returncode == 2 and "contract number" in r.stderr
    missing = softswitch("tenant", "import", str(tmp_path / "nope.toml"), "--data", str(tmp_path))
    assert missing.returncode == 2


@pytest.mark.postgres
@pytest.mark.integration
async def test_cli_on_postgresql(aiohttp_client: Any) -> None:
    from .conftest import _drop_pg_database, _pg_database

    url, name = await _pg_database()
    try:
        assert softswitch("db", "upgrade", "--database", url).returncode == 0
        r = softswitch("tenant", "import", str(DEMO), "--database", url)
        assert r.returncode == 0, r.stderr
        token = softswitch("token", "create", "--tenant", "demo", "--database", url).stdout
        store = await open_store(url)
        try:
            api = await make_api(Services(store), aiohttp_client)
            r2 = await api.get("/v1/tenants/demo/devices", token=token.strip())
            assert r2.status == 200 and len(r2.body["items"]) == 3
        finally:
            await store.close()
    finally:
        await _drop_pg_database(name)
