"""Review: what a branch changes (plan), what a run did (report), its gates (gates),
every release (history)."""
