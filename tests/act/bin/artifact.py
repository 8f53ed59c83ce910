"""upload/download for the artifact stand-ins: a folder per artifact name."""

import os
import shutil
import sys
from pathlib import Path

store = Path(os.environ["FT_ACT_ARTIFACTS"])
verb, name = sys.argv[1], sys.argv[2]
if verb == "upload":
    lines = [line.strip() for line in sys.argv[3].splitlines() if line.strip()]
    skip = [Path(line[1:]) for line in lines if line.startswith("!")]
    dest = store / name
    shutil.rmtree(dest, ignore_errors=True)
    for src in (Path(line) for line in lines if not line.startswith("!")):

        def ignore(folder, names, src=src):
            return [n for n in names if Path(folder, n) in skip]

        if src.is_dir():
            shutil.copytree(src, dest, ignore=ignore, dirs_exist_ok=True)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / src.name)
else:
    shutil.copytree(store / name, Path(sys.argv[3]), dirs_exist_ok=True)
