"""Refresh the generated repo's uv.lock after editing its pyproject.toml (template maintainers).

    uv run python scripts/relock.py

Bakes the template with default answers into a temp dir, runs `uv lock` there,
and copies the lock back with the project's own name turned into the Jinja
variable, so every bake gets a lock that `uv lock --check` accepts (tested for
each prompt combination by tests/test_bake.py).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_LOCK = ROOT / "{{cookiecutter.project_slug}}" / "uv.lock"
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"


def main() -> None:
    os.environ["FT_TEMPLATE_NO_GIT"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        baked = Path(cookiecutter(str(ROOT), no_input=True, output_dir=tmp))
        slug = baked.name
        subprocess.run([UV, "lock"], cwd=baked, check=True)
        text = (baked / "uv.lock").read_text()
    own = f'name = "{slug}"\nversion = "0.1.0"\nsource = {{ editable = "." }}'
    if text.count(own) != 1:
        sys.exit(f"relock: expected one editable entry for {slug} in uv.lock")
    text = text.replace(own, own.replace(slug, "{{ cookiecutter.project_slug }}"))
    TEMPLATE_LOCK.write_text(text)
    print(f"wrote {TEMPLATE_LOCK.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
