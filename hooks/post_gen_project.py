"""Make the baked repo a git repository with one initial commit (stdlib only).

Manifests record the git commit a run was trained from and `ft reproduce`
checks that commit out, so a generated repo starts life under version control.
Set FT_TEMPLATE_NO_GIT=1 to skip (cruft's update flow bakes into temp dirs).
"""

import os
import shutil
import subprocess
import sys

AUTHOR = {{ cookiecutter.author | tojson }}


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> int:
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
