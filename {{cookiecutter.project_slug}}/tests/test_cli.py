"""The `ft` entry point: a complete command map, light imports, the error contract.

    uv run pytest tests/test_cli.py -q

A new subcommand needs a handler in its stage's module under commands/ and an entry in
that module's COMMANDS naming it; the map tests here fail until both exist and agree.
"""

import argparse
import ast
import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FT = Path(sys.executable).parent / "ft"  # the console script this venv installed
# Seconds to import each; `ft --help` and the data/config commands must not load them.
HEAVY_MODULES = ("torch", "transformers", "peft", "accelerate", "datasets")


def leaves(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable subcommand, by its full name ("data build"), with its parser."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                found |= leaves(sub, full) or {full: sub}
    return found


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level names of every module in `python -X importtime` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    names.discard("imported package")
    return names


# --- the command map ----------------------------------------------------------------------


def test_every_command_resolves_to_a_handler(pkg):
    assert pkg.cli.COMMANDS is pkg.commands.COMMANDS
    for module in pkg.commands.MODULES:
        for name, cmd in module.COMMANDS.items():
            assert cmd.run.__module__ == module.__name__, f"{name}: its handler lives beside it"
            assert callable(cmd.run), name
            assert cmd.help and all(flags for flags, _ in cmd.args), name
    assert sum(len(m.COMMANDS) for m in pkg.commands.MODULES) == len(pkg.cli.COMMANDS)


def test_every_handler_has_a_command(pkg):
    for module in pkg.commands.MODULES:
        handlers = {
            name
            for name, fn in inspect.getmembers(module, inspect.isfunction)
            if fn.__module__ == module.__name__ and not name.startswith("_")
        }
        targets = {cmd.run.__name__ for cmd in module.COMMANDS.values()}
        assert handlers == targets, module.__name__


def test_every_parser_leaf_has_an_entry_and_builds(pkg):
    found = leaves(pkg.cli.build_parser())
    assert set(found) == set(pkg.cli.COMMANDS)
    for name, sub in found.items():
        assert sub.get_default("handler") == pkg.cli.COMMANDS[name].run
        assert sub.format_help()  # every %(default)s and metavar renders


@pytest.mark.parametrize("name", ["config validate", "data build", "train"])
def test_leaf_help_exits_zero(pkg, capsys, name):
    with pytest.raises(SystemExit) as exit_:
        pkg.cli.main([*name.split(), "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ft {name}")


def test_stage_functions_that_handlers_import_exist(pkg):
    """Handlers import their stage lazily; check each `from .x import y` without running it."""
    src = ROOT / "src" / pkg.__name__
    trees = [ast.parse(m.read_text()) for m in Path(pkg.commands.__file__).parent.glob("*.py")]
    checked = 0
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
            module = src.joinpath(*node.module.split("."))
            path = module.with_suffix(".py")
            if not path.is_file():
                path = module / "__init__.py"
            assert path.is_file(), f"commands/ imports missing module ..{node.module}"
            defined = set()
            for top in ast.parse(path.read_text()).body:
                if isinstance(top, ast.FunctionDef | ast.ClassDef):
                    defined.add(top.name)
                elif isinstance(top, ast.Assign):
                    defined |= {t.id for t in top.targets if isinstance(t, ast.Name)}
                elif isinstance(top, ast.ImportFrom | ast.Import):
                    defined |= {(a.asname or a.name).split(".")[0] for a in top.names}
            for alias in node.names:
                assert alias.name in defined, f"..{node.module} has no {alias.name}"
                checked += 1
    assert checked >= 5


def test_no_command_is_a_usage_error(pkg, capsys):
    with pytest.raises(SystemExit) as exit_:
        pkg.cli.main([])
    assert exit_.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


# --- imports stay light --------------------------------------------------------------------


def test_help_does_not_import_heavy_libraries(pkg):
    """`ft --help` through the installed console script, with import timing on."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    run = subprocess.run([FT, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: ft")
    modules = imported_modules(run.stderr)
    assert pkg.__name__ in modules and "argparse" in modules  # the timing did record
    assert modules.isdisjoint(HEAVY_MODULES), sorted(modules & set(HEAVY_MODULES))


@pytest.mark.parametrize(
    "argv", [["config", "validate", "--config", "configs/smoke.yaml"], ["data", "check"]]
)
def test_light_commands_do_not_import_heavy_libraries(pkg, data_workdir, argv):
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"{pkg.__name__}.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(("ok  ", "train "))
    modules = imported_modules(run.stderr)
    assert "yaml" in modules
    assert modules.isdisjoint(HEAVY_MODULES), sorted(modules & set(HEAVY_MODULES))


# --- the error contract --------------------------------------------------------------------


def test_console_script_user_error_is_one_line_exit_2(data_workdir):
    with open("data/raw/chat-train.jsonl", "a") as f:
        f.write('{"messages": [{"role": "user", "content": "Sum: 1 1"}]}\n')
    run = subprocess.run([FT, "data", "check"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: configs/recipe.yaml: data.sources.0.sha256: ")
    assert "(fix: if the data change is intended, set data.sources.0.sha256 to " in lines[0]


def test_console_script_bad_config_is_one_line_exit_2(data_workdir):
    argv = [str(FT), "config", "validate", "--config", "configs/smoke.yaml", "--set", "train.lrr=1"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (2, "")
    assert "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1
    assert run.stderr.startswith("error: configs/smoke.yaml: --set train.lrr: not a config key")


def test_base_hash_of_a_non_model_directory(ft, tmp_path):
    ft("base", "hash", tmp_path).user_error(
        f"error: {tmp_path}: not a model directory (no config.json)", "holds config.json"
    )


def _replace_handler(pkg, monkeypatch, name, handler):
    entry = pkg.cli.COMMANDS[name]
    monkeypatch.setitem(pkg.cli.COMMANDS, name, dataclasses.replace(entry, run=handler))


def test_keyboard_interrupt_exits_130(pkg, ft, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    _replace_handler(pkg, monkeypatch, "config validate", interrupted)
    result = ft("config", "validate")
    assert (result.code, result.out, result.err) == (130, "", "interrupted\n")


def test_a_bug_keeps_its_traceback(pkg, ft, monkeypatch):
    # Only UserError is turned into one line; anything else is a bug and must stay loud.
    def broken(args):
        raise RuntimeError("bug")

    _replace_handler(pkg, monkeypatch, "config validate", broken)
    with pytest.raises(RuntimeError, match="bug"):
        ft("config", "validate")


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"file": "a.yaml", "key": "x.y", "fix": "do z"}, "a.yaml: x.y: broken (fix: do z)"),
        ({"file": "a.yaml"}, "a.yaml: broken"),
        ({"key": "--set"}, "--set: broken"),
        ({}, "broken"),
    ],
)
def test_user_error_format(pkg, kwargs, text):
    error = pkg.errors.UserError("broken", **kwargs)
    assert error.format() == str(error) == text


def test_console_script_is_cli_main(pkg):
    assert f'ft = "{pkg.__name__}.cli:main"' in (ROOT / "pyproject.toml").read_text()
    assert FT.is_file()
