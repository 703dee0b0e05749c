"""The database: column types, tables, the dialect seam, the engine and migrations."""
