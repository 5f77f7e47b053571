"""One Alembic history upgrades empty PostgreSQL and SQLite databases to exactly the ORM schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from adapters.persistence.engine import create_engine
from adapters.persistence.migrate import alembic_config, current_revision, head_revision, upgrade
from adapters.persistence.tables import metadata
from tests.support import throwaway_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with throwaway_postgres_database("tolstoy_migration") as url:
            yield url


async def _drift(url: str) -> list:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()


async def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


def test_upgrade_head_on_an_empty_database_matches_the_metadata(empty_database: str) -> None:
    from tests.support import _run

    upgrade(empty_database)
    assert _run(_revision(empty_database)) == head_revision()
    assert _run(_drift(empty_database)) == []


def test_downgrade_to_base_and_up_again(empty_database: str) -> None:
    from tests.support import _run

    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "base")
    assert _run(_revision(empty_database)) is None
    upgrade(empty_database)  # idempotent history: the second trip works too
    assert _run(_drift(empty_database)) == []


def test_the_history_is_linear() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1


async def _sql(url: str, statement: str, params: dict | None = None) -> list:
    from sqlalchemy import text

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params or {})
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


def test_flows_made_before_versions_existed_get_their_current_version_kept(empty_database: str) -> None:
    """0004 keeps each existing flow's current steps and settings as its first FlowVersion."""
    import json

    from tests.support import _run

    upgrade(empty_database, "0003")
    _run(
        _sql(
            empty_database,
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ('org_1', 'O', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        )
    )
    steps = [{"id": "wait", "type": "delay", "config": {"ms": 5}}]
    _run(
        _sql(
            empty_database,
            "INSERT INTO flows (id, org_id, name, description, steps, settings, version, created_at, updated_at) "
            "VALUES ('flow_1', 'org_1', 'F', NULL, :steps, :settings, 3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            {"steps": json.dumps(steps), "settings": json.dumps({"execution": {"concurrency": 2}})},
        )
    )
    upgrade(empty_database)
    [row] = _run(
        _sql(empty_database, "SELECT id, org_id, flow_id, version, steps, settings FROM flow_versions")
    )
    kept = [json.loads(v) if isinstance(v, str) else v for v in row[4:]]
    assert row[:4] == ("fv_flow_1", "org_1", "flow_1", 3)
    assert kept == [steps, {"execution": {"concurrency": 2}}]


def test_existing_outbox_events_are_found_by_their_execution(empty_database: str) -> None:
    """0006 copies each event's payload executionId into the indexed execution_id column."""
    import json

    from tests.support import _run

    upgrade(empty_database, "0005")
    _run(
        _sql(
            empty_database,
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ('org_1', 'O', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        )
    )
    for event_id, payload in (("evt_1", {"executionId": "exec_1", "n": 1}), ("evt_2", {"other": True})):
        _run(
            _sql(
                empty_database,
                "INSERT INTO outbox_events (id, org_id, type, payload, created_at) "
                "VALUES (:id, 'org_1', 'step.completed', :payload, CURRENT_TIMESTAMP)",
                {"id": event_id, "payload": json.dumps(payload)},
            )
        )
    upgrade(empty_database)
    rows = _run(_sql(empty_database, "SELECT id, execution_id FROM outbox_events ORDER BY id"))
    assert [tuple(r) for r in rows] == [("evt_1", "exec_1"), ("evt_2", None)]
