"""Every SQL statement of provisioning and every row mapper, one module per resource.

    sql.py        shared helpers: WHERE building with $n placeholders, LIKE, timestamps
    meta.py       the realm
    tenants.py    tenants and holidays          -> model.Tenant
    devices.py    devices (IDs)                 -> model.Device, records.DeviceInfo
    numbers.py    numbers and ring groups       -> model.Number
    prompts.py    uploaded prompts and audio    -> records.PromptInfo
    phonebook.py  the web phonebook             -> records.PhonebookEntry
    gateways.py   carrier gateways              -> model.Gateway
    tokens.py     API tokens                    -> records.TokenInfo
    audit.py      the API's audit log           -> records.AuditEntry
    state.py      one tenant's state for the rules (TenantState)
    snapshot.py   the whole routing picture for the live snapshot (Everything)

Each function takes an open transaction (`store.base.Tx`) and speaks the SQL subset SQLite
and PostgreSQL share, so both backends run the very same statements. Booleans come back as
0/1 from SQLite, hence the `bool()` calls in the mappers. Nothing here checks a rule or a
principal: that is `provisioning.services` (which holds no SQL).
"""
