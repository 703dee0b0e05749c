"""Alembic migrations of the managed schema (one history for SQLite and PostgreSQL)."""
