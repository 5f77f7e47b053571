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
