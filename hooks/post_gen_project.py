"""Record the template link, then make the baked repo a git repository (stdlib only).

1. `.cruft.json` (what `cruft create` writes) when the template's commit is known, so
   the weekly template-update workflow can run `cruft check` / `cruft update`. Written
   here, before the initial commit, so a bake through cruft leaves a clean tree.
2. `git init` + one initial commit: manifests record the commit a run was trained
   from and `ft reproduce` checks it out. FT_TEMPLATE_NO_GIT=1 skips this step
   (cruft's update flow bakes into temp dirs).
"""

import json
import os
import shutil
import subprocess
import sys

AUTHOR = {{ cookiecutter.author | tojson }}
# Key order matters: `cruft create` rewrites .cruft.json after this hook, and the bake
# must stay a clean tree, so keys keep cookiecutter.json's order (as pairs: tojson sorts).
CONTEXT = dict(json.loads({{ cookiecutter.items() | list | tojson | tojson }}))


def template_source() -> tuple[str, str | None]:
    """(template location, its commit): given by cruft, or read from a local checkout."""
    template = CONTEXT.get("_template", "")
    if CONTEXT.get("_commit"):
        return template, CONTEXT["_commit"]
    if ":" not in template and not os.path.isabs(template):
        # A relative template path means relative to where the user ran cookiecutter;
        # hooks run inside the new project, so resolve it against the caller's $PWD.
        template = os.path.normpath(os.path.join(os.environ.get("PWD", ""), template))
    if shutil.which("git") and os.path.isdir(template):
        done = subprocess.run(["git", "-C", template, "rev-parse", "HEAD"], capture_output=True,
                              text=True)
        if done.returncode == 0:
            return template, done.stdout.strip()
    return template, None


def write_cruft_state() -> None:
    template, commit = template_source()
    if commit is None:
        return
    dropped = ("_output_dir", "_repo_dir", "_checkout", "_template", "_commit")
    context = {k: v for k, v in CONTEXT.items() if k not in dropped}
    context |= {"_template": template, "_commit": commit}
    state = {"template": template, "commit": commit, "checkout": None,
             "context": {"cookiecutter": context}, "directory": None}
    with open(".cruft.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n")


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    write_cruft_state()
    if os.environ.get("FT_TEMPLATE_NO_GIT") == "1" or shutil.which("git") is None:
        return 0
    if os.path.isdir(".git"):
        return 0
    git("init", "--quiet", "--initial-branch=main")
    git("add", "--all")
    # Identity only for this one commit, and only where the user has none configured.
    has_identity = subprocess.run(
        ["git", "config", "user.email"], capture_output=True, text=True
    ).stdout.strip()
    ident = [] if has_identity else ["-c", f"user.name={AUTHOR}", "-c", "user.email=ft-template@localhost"]
    git(*ident, "commit", "--quiet", "--no-verify", "-m", "Initial commit from ft-template")
    return 0


if __name__ == "__main__":
    sys.exit(main())
