"""The adapter files a finished run writes (train/recipe.py step 9): peft's, made canonical.

Written beside the run in `.partial-adapter/` and renamed into `adapter/`, so a killed
run never leaves a half-written adapter that looks finished.
"""

import json
import os
import shutil
import warnings
from pathlib import Path

from ..util.hashing import default_mode, write_atomic


def write_adapter(model, run_dir: Path, state: dict | None) -> None:
    """peft's adapter files of `model` (or of the gathered `state` of a sharded one)."""
    final, partial = run_dir / "adapter", run_dir / ".partial-adapter"
    shutil.rmtree(partial, ignore_errors=True)
    # peft asks the hub whether a hub base's config.json exists to decide what to save;
    # offline it decides from the local model, so the files never depend on the network.
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with warnings.catch_warnings():  # peft's note that it did not ask: expected here
            warnings.filterwarnings("ignore", message="Could not find a config file in")
            gathered = {} if state is None else {"state_dict": state}
            model.save_pretrained(partial, safe_serialization=True, **gathered)
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
    (partial / "README.md").unlink(missing_ok=True)  # peft's generic card; publish writes ours
    # peft keeps target_modules as a set and dumps it in hash-seed order: canonicalise.
    config_file = partial / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text())
    if isinstance(adapter_config.get("target_modules"), list):
        adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    write_atomic(config_file, json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    for path in partial.iterdir():  # safetensors creates its file 0600; outputs are shared
        default_mode(path)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
