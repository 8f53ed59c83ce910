"""How the processes of one run share the model: `train.strategy: ddp | fsdp`.

    torchrun --standalone --nproc_per_node 2 --no-python ft train --set train.strategy=fsdp
    accelerate launch --multi_gpu --num_processes 8 -m <package>.cli train ...   # sky/train.yaml

ddp (default): every process holds the whole model; accelerate wraps it in
DistributedDataParallel and gradients are all-reduced. fsdp: torch's FSDP2 (`fully_shard`)
shards every parameter, the frozen base included, over the processes, one unit per decoder
layer plus the root; each forward all-gathers a layer's weights and frees them after, so a
base several times one device's memory trains. With one process there is nothing to shard
and fsdp trains exactly as ddp does.

Sharded state never goes through rank 0's `optimizer.state_dict()` (which would hold only
its own shard): checkpoints and the adapter are gathered with torch.distributed.checkpoint's
state-dict API (`get_model_state_dict` / `get_optimizer_state_dict`, full and
FQN-keyed) and scattered back on resume with the `set_` counterparts. Only the adapter and
its optimizer state are gathered, never the frozen base, so this costs what a LoRA adapter
weighs, and the checkpoint's bytes do not depend on how its state was sharded.
"""

from typing import cast

from ..config import Config


def shard(cfg: Config, accelerator, model):
    """Under fsdp with several processes: shard `model` in place (before the optimizer is
    made, which must see the sharded parameters). Otherwise the model as it is."""
    if cfg.train.strategy != "fsdp" or accelerator.num_processes == 1:
        return model
    # A 4-bit base with fsdp is refused by the config (config/schema.py): not sharded here.
    from torch.distributed.fsdp import fully_shard

    for layer in _decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    return model


def prepare(accelerator, model, optimizer):
    """accelerate's prepare; a sharded model is already distributed and must not be wrapped
    in DDP as well, so only the optimizer goes through it."""
    if is_sharded(model):
        return model, accelerator.prepare(optimizer)
    return accelerator.prepare(model, optimizer)


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def adapter_state(model, accelerator) -> dict:
    """The trainable parameters by name, whole, on the CPU (on every rank: a collective when
    the model is sharded, so every rank calls it)."""
    if not is_sharded(model):
        return {
            k: v.detach().cpu()
            for k, v in accelerator.unwrap_model(model).named_parameters()
            if v.requires_grad
        }
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, ignore_frozen_params=True)
    state = get_model_state_dict(model, options=options)  # a model's state: tensors only
    return {k: cast(torch.Tensor, v).detach().cpu() for k, v in state.items()}


def optimizer_state(model, optimizer) -> dict:
    """The optimizer's state; for a sharded model gathered whole and keyed by parameter name
    (a collective: every rank calls it).

    Before the first step there is no state to gather, and torch's gatherer would create it
    by running a zero-gradient step (Adam's step count would start at 1, not 0, and the run
    would train differently from ddp): the empty state is saved as it is.
    """
    if not is_sharded(model) or not _inner(optimizer).state:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    return _to_cpu(
        get_optimizer_state_dict(
            model, _inner(optimizer), options=StateDictOptions(full_state_dict=True)
        )
    )


def load_adapter(model, accelerator, state: dict) -> None:
    import torch

    if not is_sharded(model):
        params = dict(accelerator.unwrap_model(model).named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))


def load_optimizer(model, optimizer, state: dict) -> None:
    if not is_sharded(model) or not state["state"]:  # ddp, or the empty state before step 1
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    set_optimizer_state_dict(
        model, _inner(optimizer), state, options=StateDictOptions(full_state_dict=True)
    )


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer


def _to_cpu(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _decoder_layers(model) -> list:
    """The repeated blocks FSDP shards one by one: each layer list of a decoder model."""
    import torch

    layers = [
        module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and name.endswith("layers")
    ]
    return [layer for layers_ in layers for layer in layers_]
