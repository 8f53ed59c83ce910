"""Record the template link, then make the baked repo a git repository (stdlib only).

1. `.cruft.json` (what `cruft create` writes) when the template's commit is known, so
   the weekly template-update workflow can run `cruft check` / `cruft update`. Written
   here, before the initial commit, so a bake through cruft leaves a clean tree.
2. `git init` + one initial commit: manifests record the commit a run was trained
   from and `ft reproduce` checks it out. FT_TEMPLATE_NO_GIT=1 skips this step.
3. Say what was made and the next three commands (stdout).
Inside cruft's own scratch bakes (`cruft update`, `cruft diff`) the hook does neither: a
nested repository would land in cruft's diff and break the update.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

AUTHOR = {{ cookiecutter.author | tojson }}
# Key order matters: `cruft create` rewrites .cruft.json after this hook, and the bake
# must stay a clean tree, so keys keep cookiecutter.json's order (as pairs: tojson sorts).
CONTEXT = dict(json.loads({{ cookiecutter.items() | list | tojson | tojson }}))


# cookiecutter's abbreviations, expanded into URLs a CI runner can clone without them.
ABBREVIATIONS = {"gh:": "https://github.com/{}.git", "gl:": "https://gitlab.com/{}.git",
                 "bb:": "https://bitbucket.org/{}"}
def in_cruft_scratch() -> bool:
    """Inside `cruft update`/`cruft diff`, which bake the old and new template into a fresh
    temporary directory each and diff the two: a git repository (or a .cruft.json) written
    there lands in that diff and breaks the update. cruft calls cookiecutter's
    generate_files itself, so the context has cruft's `_commit` but no `_output_dir` (which
    cookiecutter's own entry point sets), and the project is alone in a new temp directory."""
    here = os.getcwd()
    parent = os.path.dirname(here)
    return (
        "_commit" in CONTEXT
        and "_output_dir" not in CONTEXT
        and os.path.realpath(os.path.dirname(parent)) == os.path.realpath(tempfile.gettempdir())
        and os.listdir(parent) == [os.path.basename(here)]
    )


def template_source() -> tuple[str, str | None]:
    """(template location, its commit): given by cruft, or read from the checkout used."""
    template = CONTEXT.get("_template", "")
    if CONTEXT.get("_commit"):
        return template, CONTEXT["_commit"]
    for short, url in ABBREVIATIONS.items():
        if template.startswith(short):
            template = url.format(template[len(short):])
    if ":" not in template and not os.path.isabs(template):
        # A relative template path means relative to where the user ran cookiecutter;
        # hooks run inside the new project, so resolve it against the caller's $PWD.
        template = os.path.normpath(os.path.join(os.environ.get("PWD", ""), template))
    # A remote template was cloned by cookiecutter into _repo_dir; a local one is its own.
    checkout = CONTEXT.get("_repo_dir") or template
    if shutil.which("git") and os.path.isdir(checkout):
        done = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True,
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


def say_what_was_made(committed: bool) -> None:
    """A bake is otherwise silent: name what was made and the first three commands."""
    here = os.path.basename(os.getcwd())
    print(
        f"\nBaked {here}/: package {CONTEXT.get('package_name')}, Python "
        f"{CONTEXT.get('python_version')}, base {CONTEXT.get('base_model')}, registry "
        f"{CONTEXT.get('registry')}."
    )
    if committed:
        print("It is a git repository with one commit (\"Initial commit from ft-template\"): "
              "there is nothing to commit yet.")
    print("Next:\n"
          f"  cd {here} && uv sync --frozen     # the locked environment (README: size, CPU-only)\n"
          "  uv run ft train                    # trains configs/recipe.yaml, prints runs/<id>\n"
          "  uv run ft reproduce runs/<id>      # re-runs its REPRODUCE.md, compares bytes")


def main() -> int:
    if in_cruft_scratch():
        return 0  # cruft writes the state and applies the diff itself
    write_cruft_state()
    committed = commit_bake()
    say_what_was_made(committed)
    return 0


def commit_bake() -> bool:
    """`git init` + the initial commit; False where skipped."""
    if os.environ.get("FT_TEMPLATE_NO_GIT") == "1" or shutil.which("git") is None:
        return False
    if os.path.isdir(".git"):
        return False
    git("init", "--quiet", "--initial-branch=main")
    git("add", "--all")
    # Identity only for this one commit, and only where the user has none configured.
    has_identity = subprocess.run(
        ["git", "config", "user.email"], capture_output=True, text=True
    ).stdout.strip()
    ident = [] if has_identity else ["-c", f"user.name={AUTHOR}", "-c", "user.email=ft-template@localhost"]
    git(*ident, "commit", "--quiet", "--no-verify", "-m", "Initial commit from ft-template")
    return True


if __name__ == "__main__":
    sys.exit(main())
