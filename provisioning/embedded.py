"""Provisioning inside the `softswitch serve` process: the store, the REST API on the switch's
HTTP listener, and the live snapshot the switch routes from.

    prov = await Provisioning.open(config)  # store opened + migrated; seed imported if empty
    app = SwitchApp(config, snapshot_source=prov.snapshot_source, http_hooks=[prov.mount])
    ...
    await prov.close()

The embedded default is SQLite under the data directory (`Config.effective_database_url`);
`data.database_url = "postgresql://…"` selects PostgreSQL. With SQLite, the API and the switch
share one Store object, so a committed change reaches the switch through the in-process
notification at once; with PostgreSQL it comes back through LISTEN/NOTIFY, which is also how
other switch processes hear about it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .live import seed_if_empty, store_source
from .seed import load_seed
from .service import Service
from .store import open_store
from .store.base import Store

if TYPE_CHECKING:
    from switch.app import SnapshotSource, SwitchApp
    from switch.config import Config

__all__ = ["Provisioning"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Provisioning:
    store: Store
    service: Service
    snapshot_source: SnapshotSource

    @classmethod
    async def open(cls, config: Config) -> Provisioning:
        store = await open_store(config.effective_database_url)
        try:
            if config.seed is not None and await seed_if_empty(store, load_seed(config.seed)):
                log.info("seed %s imported into the empty store", config.seed)
        except BaseException:
            await store.close()
            raise
        return cls(store=store, service=Service(store), snapshot_source=store_source(store))

    def mount(self, web_app: web.Application, switch: SwitchApp) -> None:
        """The `SwitchApp` HTTP hook: the REST API under /v1, counted in the switch's
        Prometheus registry."""
        from .api.app import mount_api

        mount_api(web_app, self.service, registry=switch.metrics.registry)

    async def close(self) -> None:
        await self.store.close()
