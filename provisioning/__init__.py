"""Provisioning: the tenant data, the service rules, the stores and the REST API.

Layers, lowest first (`tests/unit/provisioning/test_layers.py` checks the imports):

    model.py          the routing snapshot the switch and routing/ use (CONTRACT)
    diff.py           pure snapshot comparisons (`dropped_devices`)
    records.py        read-side records (DeviceInfo, PromptInfo, voicemail messages, …)
    credentials.py    HA1 hashes (RFC 7616 §3.4.2), provisioning's own
    errors.py         domain errors with stable error_ids
    rules.py          the service rules as pure functions, and every limit, once
    phonebook_csv.py  the phonebook CSV format
    seed.py           the TOML seed file: parse and check (no store)
    store/            SQLite and PostgreSQL behind one seam; store/queries/ holds all SQL
    services/         one service per resource: principal, rules, one transaction each
    api/              the REST API (aiohttp), one module per resource over its service
    live.py           the live snapshot, rebuilt on every committed change

Provisioning imports nothing of the switch, routing or media: it is the bottom layer. The
composition root that wires it into a running node is switch/node.py (and the provisioning
subcommands switch/cli_provisioning.py).
"""
