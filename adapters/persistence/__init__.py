"""SQLAlchemy 2 (async) persistence: one set of repositories for PostgreSQL and SQLite."""
