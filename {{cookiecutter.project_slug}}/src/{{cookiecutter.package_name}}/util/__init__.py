"""Small helpers shared by every stage: hashing and atomic writes, git, safe paths."""
