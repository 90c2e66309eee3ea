"""Provisioning: the tenant data, the service rules, the stores and the REST API.

Layers, lowest first (`tests/unit/provisioning/test_layers.py` checks the imports):

    model.py          the routing snapshot the switch and routing/ use (CONTRACT)
    diff.py           pure snapshot comparisons (`dropped_devices`)
    records.py        read-side records the API shows (DeviceInfo, PromptInfo, …)
    credentials.py    HA1 hashes (RFC 7616 §3.4.2), provisioning's own
    errors.py         domain errors with stable error_ids
    rules.py          the service rules as pure functions, and every limit, once
    phonebook_csv.py  the phonebook CSV format
    seed.py           the TOML seed file: parse and check (no store)
    store/            SQLite and PostgreSQL behind one seam; store/queries/ holds all SQL
    services/         one service per resource: principal, rules, one transaction each
    api/              the REST API (aiohttp), one module per resource over its service
    live.py           the live snapshot, rebuilt on every committed change
    service.py        compatibility names for the modules below (see its docstring)
    cli.py, embedded.py   the composition root (imports the switch's config and app)

Provisioning imports nothing of the switch except in the composition root.
"""
