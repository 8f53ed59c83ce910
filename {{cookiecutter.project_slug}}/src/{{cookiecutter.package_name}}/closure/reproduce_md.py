"""REPRODUCE.md: rendered from manifest.json, never by hand, and its command blocks read back.

`render_reproduce` is the one rendering (`ft train` writes it, `ft reproduce` and
`ft registry pull` re-render it to catch edits); `command_block` and `fenced_block` read the
blocks `ft reproduce` executes verbatim: the full replay's, or a segment replay's setup and
per-interval blocks (closure/segments.py).
"""

import shlex

from ..util.groups import run_groups

COMMAND_FENCE = "```bash"
# Segment replay (closure/segments.py): the setup block runs once in the checkout, the
# interval block once per interval with FT_SEGMENT, FT_CHAIN and FT_OUT set.
SEGMENT_FENCES = ("```bash segment-setup", "```bash segment")


def reproduce_command(manifest: dict) -> str:
    """The shell lines that rebuild the artifact from a clean checkout of the commit."""
    cmd = manifest["command"]
    if cmd.get("backend") == "sky":
        # The same SkyPilot job: image from image.lock, hardware from the config's launch:
        # section; the finished run is fetched back into FT_OUT for the comparison.
        launch = [
            "uv",
            "run",
            "--frozen",
            "--group",
            "launch",
            "ft",
            "launch",
            "--backend",
            "sky",
            "--config",
            cmd["config"],
        ]
        for override in cmd["overrides"]:
            launch += ["--set", override]
        return (
            "uv sync --frozen --group launch\n"
            + shlex.join(launch)
            + ' --fetch "${FT_OUT:-runs/reproduced}"\n'
        )
    train = _train_command(manifest)
    return _sync_line(manifest) + shlex.join(train) + ' --out "${FT_OUT:-runs/reproduced}"\n'


def _groups(manifest: dict) -> list[str]:
    """`--group G` for each optional dependency group the run needs (qlora, hub-data)."""
    return [arg for group in run_groups(manifest["config"]) for arg in ("--group", group)]


def _sync_line(manifest: dict) -> str:
    return shlex.join(["uv", "sync", "--frozen", *_groups(manifest)]) + "\n"


def _train_command(manifest: dict) -> list[str]:
    cmd = manifest["command"]
    world = manifest["hardware"]["world_size"]
    launcher = (
        ["torchrun", "--standalone", f"--nproc_per_node={world}", "--no-python"]
        if world > 1
        else []
    )
    train = ["uv", "run", "--frozen", *_groups(manifest), *launcher, "ft", "train"]
    train += ["--config", cmd["config"]]
    for override in cmd["overrides"]:
        train += ["--set", override]
    return train


def segment_commands(manifest: dict) -> tuple[str, str] | None:
    """(setup, per-interval) shell lines of a segment replay; None without a chain.

    Runs trained by SkyPilot (backend sky) get none here: their intervals are replayed as
    managed jobs by `ops.segments_sky`, not from this document (docs/verification.md).
    """
    if not manifest.get("checkpoints") or manifest["command"].get("backend") == "sky":
        return None
    interval = shlex.join(_train_command(manifest)) + (
        ' --segment "$FT_SEGMENT" --chain "$FT_CHAIN" --out "$FT_OUT"\n'
    )
    return _sync_line(manifest), interval


def _segment_section(m: dict) -> list[str]:
    commands = segment_commands(m)
    if commands is None:
        return []
    steps = [c["step"] for c in m["checkpoints"]] + [m["config"]["train"]["max_steps"]]
    setup, interval = commands
    return [
        "## Segment replay",
        "",
        "`ft reproduce --segments all` runs the first block once, then the second once per "
        "interval (FT_SEGMENT = interval, FT_CHAIN = this run's directory, FT_OUT = a new "
        "directory): interval i starts from checkpoint i (interval 0 from the config alone) "
        "and must produce checkpoint i+1; the last one must produce every expected output.",
        "",
        SEGMENT_FENCES[0],
        setup.rstrip("\n"),
        "```",
        "",
        SEGMENT_FENCES[1],
        interval.rstrip("\n"),
        "```",
        "",
        "| interval | steps | start checkpoint sha256 | ends at |",
        "| --- | --- | --- | --- |",
        *[
            f"| {i} | {c['step']}-{steps[i + 1]} | `{c['sha256']}` | "
            + (
                f"`{m['checkpoints'][i + 1]['path']}`"
                if i + 1 < len(m["checkpoints"])
                else "the outputs"
            )
            + " |"
            for i, c in enumerate(m["checkpoints"])
        ],
        "",
    ]


def render_reproduce(m: dict) -> str:
    base = m["base_model"]
    base_pin = (
        f"`{base['path']}` sha256 `{base['sha256']}`"
        if "path" in base
        else f"`{base['hub_id']}` @ `{base['revision']}`"
    )
    hw = m["hardware"]
    shape = (
        f"{hw['device_count']} x {hw['device_name']}"
        if hw["device_type"] == "cuda"
        else f"CPU ({hw['cpu_model']}, {hw['cpu_isa']})"
    )
    lines = [
        f"# Reproduce run `{m['run_id']}`",
        "",
        "<!-- Rendered from manifest.json by `ft train`. Do not edit: `ft reproduce` executes "
        "the command block below verbatim and fails if this file differs from the rendering. -->",
        "",
        f"A LoRA adapter on {base_pin}, trained with seed {m['seed']} on "
        f"{m['data']['splits']['train']['rows']} rows (data sha256 "
        f"`{m['data']['splits']['train']['sha256']}`).",
        "",
        "## Pins",
        "",
        "| input | pin |",
        "| --- | --- |",
        f"| git commit | `{m['git']['commit']}`{' (dirty tree!)' if m['git']['dirty'] else ''} |",
        f"| config | `{m['command']['config']}` sha256 `{m['config_sha256']}` |",
        f"| base model | {base_pin} |",
        f"| tokenizer | sha256 `{base.get('tokenizer_sha256')}` |",
        # Manifests written before chat data have no such pin: their rendering is unchanged.
        *([f"| chat template | {_chat_pin(m)} |"] if "chat_template_sha256" in base else []),
        f"| uv.lock | sha256 `{m['environment']['uv_lock_sha256']}` |",
        f"| image | `{m['environment']['image_digest'] or 'none (local run)'}` |",
        f"| hardware | {shape}, {hw['world_size']} process(es), {hw['torch_threads']} threads |",
        f"| mode | {m['config']['reproduce']['mode']} |",
        "",
        "## Command",
        "",
        f"From a clean checkout of commit `{m['git']['commit']}`, on the same hardware shape:",
        "",
        COMMAND_FENCE,
        reproduce_command(m).rstrip("\n"),
        "```",
        "",
        "## Expected hashes",
        "",
        "| file | sha256 |",
        "| --- | --- |",
        *[f"| `{name}` | `{digest}` |" for name, digest in sorted(m["outputs"].items())],
        "",
        *_segment_section(m),
    ]
    return "\n".join(lines)


def _chat_pin(m: dict) -> str:
    digest = m["base_model"].get("chat_template_sha256")
    used = m["config"]["data"].get("row_format") == "chat"
    if digest is None:
        return "none (the tokenizer has none)"
    return f"sha256 `{digest}`" + ("" if used else " (not used: prompt_response rows)")


def command_block(text: str) -> str | None:
    """The first ```bash block of a REPRODUCE.md, exactly as written."""
    return fenced_block(text, COMMAND_FENCE)


def fenced_block(text: str, fence: str) -> str | None:
    """The body of the first block opened by exactly `fence`, as written."""
    start = text.find(fence + "\n")
    if start < 0:
        return None
    body_start = start + len(fence) + 1
    end = text.find("\n```", body_start)
    return None if end < 0 else text[body_start : end + 1]
