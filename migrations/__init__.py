"""Alembic migration history for PostgreSQL and SQLite (one history for both)."""
