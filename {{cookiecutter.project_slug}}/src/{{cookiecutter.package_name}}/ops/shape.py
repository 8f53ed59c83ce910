"""The hardware shape of a SkyPilot job: what `ft launch` asks for, and the processes it starts.

`check_shape` runs in `ft launch --backend sky`, before anything is submitted; `processes` and
`launcher` run inside the job (`ft task run`, ops/task.py): one training process per GPU (one
on a node without GPUs), several joined by `accelerate launch`, never a home-made launcher.
"""

import sys

from ..config import Config
from ..errors import UserError

# SkyPilot accepts any accelerator name and fails only when no cloud offers it, after
# provisioning starts. Its catalog is downloaded from a git host at run time, so it cannot be
# read offline: names are checked against this list, and a name missing from it is warned
# about, not refused (a new GPU should not need an ft release); a known name's per-node count
# must be one the list gives. A GPU missing here: add it with the counts `sky show-gpus NAME`
# lists.
ACCELERATORS = {
    "B200": (1, 2, 4, 8),
    "H200": (1, 2, 4, 8),
    "H100": (1, 2, 4, 8),
    "GH200": (1,),
    "A100-80GB": (1, 2, 4, 8),
    "A100": (1, 2, 4, 8, 16),
    "L40S": (1, 2, 4, 8),
    "L4": (1, 2, 4, 8),
    "A10G": (1, 4, 8),
    "A10": (1,),
    "T4": (1, 2, 4, 8),
    "V100": (1, 2, 4, 8),
}
NO_SPOT = ("lambda",)  # infra without spot instances


def check_shape(cfg: Config) -> None:
    """Accelerator name and per-node count from our list; no spot where there is none."""
    spec = cfg.launch.accelerators
    name, _, count = spec.partition(":")
    if name not in ACCELERATORS:
        print(
            f"warning: {cfg._path}: launch.accelerators: {name!r} is not in ft's list "
            f"({', '.join(ACCELERATORS)}); SkyPilot fails the job when it provisions if no "
            f"cloud offers it (check: `sky show-gpus {name}`; add it to ACCELERATORS in "
            "ops/shape.py to have its counts checked)",
            file=sys.stderr,
        )
    elif not count.isdigit() or int(count) not in ACCELERATORS[name]:
        raise UserError(
            f"{name} comes {ACCELERATORS[name]} to a machine, not {count!r}",
            file=cfg._path,
            key="launch.accelerators",
            fix=f"use {name}:N with N in {ACCELERATORS[name]}, and more nodes for more",
        )
    if cfg.launch.use_spot and cfg.launch.infra.split("/")[0] in NO_SPOT:
        raise UserError(
            f"{cfg.launch.infra} has no spot instances",
            file=cfg._path,
            key="launch.use_spot",
            fix="set launch.use_spot to false",
        )


def processes(gpus_per_node: int, nodes: int) -> int:
    """Training processes in the job: one per GPU, one on a node without GPUs."""
    return max(gpus_per_node, 1) * nodes


def launcher(
    train: list[str], *, gpus_per_node: int, nodes: int, rank: int, node_ips: str, port: str
) -> list[str]:
    """The command this node runs: `train` itself for a single process, else accelerate.

    accelerate joins the nodes at the first of SkyPilot's node IPs (one a line);
    `--multi_gpu` means "several processes over torch.distributed" (gloo on CPU nodes).
    """
    total = processes(gpus_per_node, nodes)
    if total == 1:
        return list(train)
    return [
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(total),
        "--num_machines",
        str(nodes),
        "--machine_rank",
        str(rank),
        "--main_process_ip",
        node_ips.split("\n", 1)[0],
        "--main_process_port",
        port,
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--no_python",
        *train,
    ]
