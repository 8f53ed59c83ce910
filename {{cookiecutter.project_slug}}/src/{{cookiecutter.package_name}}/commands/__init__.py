"""The `ft` commands, one module per stage: each maps its command names straight to the
handler functions beside them, with their help line and arguments (spec.py).

    config.py   ft config, ft base          train.py    ft train, reproduce, diff, fetch
    data.py     ft data                     publish.py  ft publish, registry, generate, export
    review.py   ft plan, report, gate, migrate, retrain, history
    ops.py      ft launch, task run, image, jobs, release, doctor

A handler parses nothing and decides nothing: it turns parsed arguments into a call of
the stage function that does the work, and prints the result for a person. cli.py
imports these modules to build `ft --help`, so every stage import, the config schema's
included, is made inside the handler that needs it. tests/test_cli.py checks that every
handler has a command and every command a handler.
"""

from . import config, data, ops, publish, review, train
from .spec import Command

MODULES = (config, data, train, publish, review, ops)
COMMANDS: dict[str, Command] = {
    name: command for module in MODULES for name, command in module.COMMANDS.items()
}
