"""The closure of a run: its manifest, the reproduce gate, and diffs between runs."""
