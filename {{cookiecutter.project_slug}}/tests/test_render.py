"""The review templates (report.md, the history page, migration.md): shipped in the wheel,
strict, escaped where HTML.

    uv run pytest tests/test_render.py -q

report.md, the history page and migration.md are rendered from Jinja templates that are
package data (src/<package>/review/report/templates/); these tests build the real wheel and
render from it, so an install that is not this checkout (the training image, `uv tool
install`) finds them.
"""

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jinja2
import pytest
from conftest import PKG_NAME, ROOT

TEMPLATES = f"{PKG_NAME}/review/report/templates"
EMPTY_HISTORY = {
    "uri": "u",
    "generated": "g",
    "count": 0,
    "figures": [],
    "rows": [],
    "pin_names": [],
}


@pytest.fixture(scope="module")
def render():
    return importlib.import_module(f"{PKG_NAME}.review.report.templating")


def test_templates_ship_in_the_wheel_and_load_from_it(tmp_path):
    source = sorted(p.name for p in (ROOT / "src" / TEMPLATES).iterdir())
    assert source == [
        "gates.md.j2",
        "history.html.j2",
        "migration.md.j2",
        "plan.md.j2",
        "report.md.j2",
        "tables.md.j2",
    ]
    uv = Path(sys.executable).parent / "uv"
    dist = tmp_path / "dist"
    # uv builds with its built-in uv_build: no download, so this runs offline.
    subprocess.run(
        [str(uv), "build", "--wheel", "--offline", "--out-dir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    assert sorted(n.removeprefix(TEMPLATES + "/") for n in names if n.endswith(".j2")) == source
    # The unpacked wheel, ahead of this checkout on sys.path, renders with its own templates.
    script = (
        f"import pathlib, {PKG_NAME}.review.report.templating as r\n"
        f"assert pathlib.Path(r.__file__).is_relative_to({str(tmp_path / 'site')!r}), r.__file__\n"
        "print(sorted(r.environment().list_templates()))\n"
        f"page = r.render_template('history.html.j2', **{EMPTY_HISTORY!r})\n"
        "print('No published version yet' in page)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(source), "True"]


def test_a_missing_value_is_an_error_not_an_empty_string(render):
    context = dict(EMPTY_HISTORY)
    del context["uri"]
    with pytest.raises(jinja2.UndefinedError, match="'uri' is undefined"):
        render.render_template("history.html.j2", **context)


def test_html_is_escaped_and_markdown_is_not(render):
    page = render.render_template(
        "history.html.j2", **{**EMPTY_HISTORY, "uri": "file:///<script>&"}
    )
    assert "<code>file:///&lt;script&gt;&amp;</code>" in page and "<script>" not in page
    env = render.environment()
    # Markdown is text as it is: a table cell is made safe by the `cell` and `code` filters.
    assert env.autoescape("history.html.j2") is True and env.autoescape("report.md.j2") is False
    # Numbers and table cells come from format.py, as filters.
    assert env.from_string("{{ 1234567|fmt }} {{ 'a|b'|cell }} {{ none|code }}").render() == (
        "1,234,567 a\\|b -"
    )


def test_migration_names_each_changed_model_field_once():
    """migration.md's layout on a drift measured by hand: no row crosses the window and the
    model class changed (it was once listed twice)."""
    migrate = importlib.import_module(f"{PKG_NAME}.review.migrate")
    counts = {"rows": 1, "max_seq_len": 64, "over_before": 0, "over_after": 0, "now_over": []}
    counts |= {"now_fit": [], "lost_before": 0, "lost_after": 0, "counts": {0: [5, 6]}}
    counts |= {"change_quantiles": {"p0": 1, "p50": 1, "p100": 1500}, "change_mean": 1.0}
    facts = {"vocab_size": 512, "special_tokens": {"eos_token": ["</s>", 2]}, "chat_template": None}
    arch = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "parameters": 139584}
    measured = {
        "result": {
            "_rows": {"split train": [{"prompt": "p", "response": "r"}]},
            "split train": counts,
        },
        "facts": {"old": facts, "new": facts | {"vocab_size": 300}},
        "arch": {"old": arch, "new": arch | {"architectures": ["Other"], "parameters": 100}},
    }
    old, new = {"path": "base/a", "sha256": "a" * 64}, {"path": "base/b", "sha256": "b" * 64}
    text = migrate.render("configs/x.yaml", old, new, measured)
    assert text.startswith("# Base-model migration\n") and text.endswith("(docs/evaluation.md).\n")
    assert "| split train | 1 | 0 → 0 | 0 | 0 | 0 → 0 | +1 / +1 / +1500 (+1.0) |" in text
    assert "\n\nNo row crosses the context window either way.\n\n## Tokenizer\n" in text
    assert "| vocabulary | 512 | 300 | changed |" in text
    model = "Parameters: 139,584 → 100 (-139,484). Changed: architectures "
    model += "['LlamaForCausalLM'] → ['Other']."
    assert f"\n\n## Model\n\n{model}\n\n## Next\n" in text
    # `ft plan` shows the same body under its own heading level, as lines.
    lines = migrate.body(old, new, measured, "####")
    assert lines[0] == "- from: `base/a` sha256 `" + "a" * 64 + "`"
    assert lines[-3:] == ["#### Model", "", model]
