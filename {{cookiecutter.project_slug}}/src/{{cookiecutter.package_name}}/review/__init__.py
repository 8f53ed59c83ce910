"""Review: what a branch changes (plan), what a run did (report), every release (history)."""
