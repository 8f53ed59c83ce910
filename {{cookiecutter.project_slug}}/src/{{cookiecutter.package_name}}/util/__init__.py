"""Helpers every stage shares: hashing and atomic writes."""
