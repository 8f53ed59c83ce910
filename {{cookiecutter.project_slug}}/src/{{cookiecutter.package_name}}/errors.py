"""The one exception type for mistakes a user can fix.

The CLI prints a UserError as a single line (`error: <file>: <key>: <problem>
(fix: <what to do>)`) and exits 2, without a traceback. Anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        key: str | None = None,
        fix: str | None = None,
    ):
        self.problem, self.file, self.key, self.fix = problem, file, key, fix
        super().__init__(self.format())

    def format(self) -> str:
        where = ": ".join(str(p) for p in (self.file, self.key) if p)
        text = f"{where}: {self.problem}" if where else self.problem
        return f"{text} (fix: {self.fix})" if self.fix else text
