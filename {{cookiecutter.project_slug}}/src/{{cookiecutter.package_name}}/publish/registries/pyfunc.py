"""An MLflow pyfunc over a release: base model at its pin + the release's LoRA adapter.

    import mlflow
    model = mlflow.pyfunc.load_model("models:/my-finetune@v1-2-0")
    model.predict(["Add 2 and 3."])                              # prompts
    model.predict([[{"role": "user", "content": "Add 2 and 3."}]])  # conversations

The mlflow:// backend copies this file into each release as `code/ft_adapter_pyfunc.py`
and writes an `MLmodel` naming it as the `python_function` loader, so a release is an
MLflow Model that loads without this package installed (transformers, peft and torch
are needed, as for any adapter). Both files are in the release index, hashed like the
weights. The base is loaded as the release's manifest pins it: a hub base by id and
40-hex revision; a local base from its recorded path (relative to the working directory,
or below $FT_BASE_ROOT), refused unless its content hash matches the manifest.

Generation is greedy (no sampling) with a fixed token budget, so a prediction is a function
of the release and the input. Chat inputs go through the base tokenizer's chat template,
prompts too where the run trained on chat rows.
"""

import hashlib
import json
import os
from pathlib import Path

MAX_NEW_TOKENS = 64


def _sha256_tree(root: Path) -> str:
    """The generated repo's directory hash (hashing.sha256_tree), restated: no package import."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        h.update(f"{path.relative_to(root).as_posix()}\0{digest.hexdigest()}\n".encode())
    return h.hexdigest()


class AdapterModel:
    """The base at the manifest's pin with the adapter in `adapter_dir` (default: beside it)."""

    def __init__(self, release_dir: str, adapter_dir: str | None = None):
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        release = Path(release_dir)
        manifest = json.loads((release / "manifest.json").read_text())
        self.manifest = manifest
        base = manifest["base_model"]
        if "hub_id" in base:
            source, revision = base["hub_id"], base["revision"]
            tok_revision = base.get("tokenizer_revision") or revision
        else:
            source = Path(os.environ.get("FT_BASE_ROOT", ".")) / base["path"]
            revision = tok_revision = None
            if not source.is_dir():
                raise ValueError(f"base model {source} not found (FT_BASE_ROOT sets its root)")
            actual = _sha256_tree(source)
            if actual != base["sha256"]:
                raise ValueError(
                    f"base model {source} has content hash {actual}, the manifest pins "
                    f"{base['sha256']}"
                )
        self.tokenizer = AutoTokenizer.from_pretrained(source, revision=tok_revision)
        dtype = getattr(torch, manifest["config"]["model"].get("dtype", "float32"))
        model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=dtype)
        self.model = PeftModel.from_pretrained(model, str(adapter_dir or release)).eval()
        self.chat = manifest["config"]["data"].get("format") == "chat"

    def _ids(self, item) -> list[int]:
        if isinstance(item, str) and not self.chat:
            bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
            return bos + self.tokenizer(item + "\n", add_special_tokens=False)["input_ids"]
        messages = [{"role": "user", "content": item}] if isinstance(item, str) else list(item)
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True
        )["input_ids"]

    def predict(self, model_input, params=None) -> list[str]:
        import torch

        if hasattr(model_input, "to_dict"):  # a DataFrame: one column of prompts
            model_input = list(model_input.iloc[:, 0])
        if isinstance(model_input, str | dict):
            model_input = [model_input]
        budget = int((params or {}).get("max_new_tokens", MAX_NEW_TOKENS))
        out = []
        for item in model_input:
            ids = torch.tensor([self._ids(item)])
            with torch.no_grad():
                generated = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=budget,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
            new_tokens = generated[0, ids.shape[1] :]
            out.append(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        return out


def _load_pyfunc(data_path: str) -> AdapterModel:
    """MLflow's loader hook: `data_path` is the release directory."""
    return AdapterModel(data_path)
