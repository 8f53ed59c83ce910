"""Review: what a change does to training, read by people (plan, report, gates, history)."""
