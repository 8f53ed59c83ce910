"""Helpers every stage shares: hashing and atomic writes, safe names, JSON records."""
