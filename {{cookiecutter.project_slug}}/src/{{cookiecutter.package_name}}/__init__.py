"""A reproducible fine-tune: every artifact comes with the closure that rebuilds it.

Stages, in pipeline order: config -> data -> base/model -> train -> evaluate ->
manifest -> reproduce -> publish. `ft --help` lists the commands.
"""
