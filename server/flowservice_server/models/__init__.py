"""Data functions over a connection the caller owns (they never commit)."""
