"""Pooled load through a real pgbouncer (transaction pooling, 4 server connections, loopback only): 32 clients for 16
tenants, each transaction authenticating with its own token. The full-size run (100,000+ transactions) is
`make soak`; `make test` runs a shorter one (TG_POOL_TRANSACTIONS, default 6,000). See tests/pooled/pgbouncer_load.py
for what each transaction checks."""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "pooled"))
import pgbouncer_load  # noqa: E402

TRANSACTIONS = int(os.environ.get("TG_POOL_TRANSACTIONS", "6000"))


def test_pooled_load_keeps_every_transaction_in_its_tenant():
    outcome = pgbouncer_load.run(TRANSACTIONS, clients=32, tenants=16, pool_size=4, deadline=900)
    assert outcome["failures"] == []
    assert (outcome["transactions"], outcome["cross_tenant_rows"], outcome["carried_context"],
            outcome["unexpected_errors"], outcome["foreign_updates_changed"], outcome["rows_changed_by_other_tenants"],
            outcome["counts_match"]) == (TRANSACTIONS, 0, 0, 0, 0, 0, True)
    assert outcome["foreign_updates_tried"] >= TRANSACTIONS - 32  # every transaction but each client's first tried
    assert 1 <= outcome["peak_server_connections"] <= 4  # really multiplexed over 4 server connections
    assert outcome["ok"]


def test_negative_control_session_scope_leaks_through_a_transaction_pooler():
    """The probe can fail: with a session-scoped context (which tenant_guard documents as unfit for transaction
    pooling) the next client on the server connection inherits it, and the driver catches that."""
    outcome = pgbouncer_load.run(600, clients=32, tenants=16, pool_size=4, deadline=300, scope="session")
    assert outcome["carried_context"] > 0
    assert not outcome["ok"]
