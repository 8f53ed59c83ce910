"""Every random source follows from the config seed; deterministic kernels only.

Seeds for separate purposes (data order, adapter init, dropout per rank, worker
streams) are derived by name, so adding a new consumer of randomness does not
shift the stream of an existing one:

    derive(1234, "adapter-init") == int(sha256("1234:adapter-init")[:16], 16) % 2**63
"""

import hashlib
import os
import random


def derive(seed: int, purpose: str) -> int:
    return int(hashlib.sha256(f"{seed}:{purpose}".encode()).hexdigest()[:16], 16) % (2**63)


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def configure(seed: int) -> None:
    """Call before any CUDA work: deterministic algorithms, no TF32, global seeds."""
    # cuBLAS needs a fixed workspace for deterministic GEMMs; must be set before CUDA init.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    seed_all(seed)


def worker_init(worker_id: int) -> None:
    """DataLoader worker streams: torch seeds each worker from our generator; follow it."""
    import numpy as np
    import torch

    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
