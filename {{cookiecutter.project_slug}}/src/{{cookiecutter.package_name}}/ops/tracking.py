"""Optional experiment trackers: the metric records of metrics.jsonl, forwarded.

    # configs/recipe.yaml
    track:
      report_to: [mlflow]        # any of tensorboard, mlflow, wandb; [] (default) sends nothing

Every run writes RUN_DIR/metrics.jsonl, whatever this says: that file is what
`ft report` plots and what a release carries. With `track.report_to` set, the same
records ({step, loss, lr}) also go to each tracker through the library's own API
(TensorBoard's SummaryWriter, mlflow.log_metrics, wandb.log), on the main process
only. Libraries are imported when a run starts, and a missing one stops the run
at once with the package to add: a run never trains for an hour and then turns
out to have logged nowhere.

Trackers write outside the run directory (`track.dir`, relative to the working
directory, or the tracker's server): their files hold wall-clock times and
hostnames, so they are not run outputs and must not enter the manifest's hashes.
"""

import os
from pathlib import Path

from ..errors import UserError
from ..util.groups import GROUPS, fix

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb"}


class Trackers:
    """The trackers of one run; `log` forwards one metric record to each."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    @classmethod
    def start(cls, cfg, run_dir: Path, main_process: bool = True) -> "Trackers":
        if not main_process or not cfg.track.report_to:
            return cls([])
        starters = {"tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb}
        sinks = []
        try:
            for i, name in enumerate(cfg.track.report_to):
                sinks.append(starters[name](cfg, Path(run_dir), f"track.report_to.{i}"))
        except BaseException:
            cls(sinks).close()
            raise
        return cls(sinks)

    def log(self, record: dict) -> None:
        values = {k: float(v) for k, v in record.items() if k != "step"}
        for sink in self.sinks:
            sink.log(values, int(record["step"]))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def _require(name: str, key: str, cfg, import_):
    try:
        return import_()
    except ImportError:
        # mlflow is locked in its own dependency group; the others are not locked at all.
        add = fix(name) if name in GROUPS else f"`uv add {PACKAGES[name]}` and commit uv.lock"
        raise UserError(
            f"{name} is listed in track.report_to but {PACKAGES[name]} is not installed",
            file=cfg._path,
            key=key,
            fix=f"{add}, or remove {name} from track.report_to",
        ) from None


class _TensorBoard:
    def __init__(self, writer):
        self.writer = writer

    def log(self, values: dict, step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _tensorboard(cfg, run_dir: Path, key: str):
    def load():
        import tensorboard  # noqa: F401  torch's writer needs the package itself
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter

    writer_cls = _require("tensorboard", key, cfg, load)
    return _TensorBoard(writer_cls(log_dir=str(Path(cfg.track.dir) / "tensorboard" / run_dir.name)))


class _MLflow:
    def __init__(self, mlflow, run):
        self.mlflow, self.run = mlflow, run

    def log(self, values: dict, step: int) -> None:
        self.mlflow.log_metrics(values, step=step, run_id=self.run.info.run_id)

    def close(self) -> None:
        self.mlflow.end_run()


def _mlflow(cfg, run_dir: Path, key: str):
    mlflow = _require("mlflow", key, cfg, lambda: __import__("mlflow"))
    # mlflow's own default is a sqlite file in the working directory, which needs
    # sqlalchemy (not in mlflow-skinny) and would dirty the git tree: ask for a server.
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise UserError(
            "mlflow is listed in track.report_to but MLFLOW_TRACKING_URI is not set",
            file=cfg._path,
            key=key,
            fix="export MLFLOW_TRACKING_URI=http://<your mlflow server> (credentials "
            "in MLFLOW_TRACKING_USERNAME/PASSWORD or TOKEN, never in the config)",
        )
    from ..util.net import cap_mlflow_retries, check_reachable

    check_reachable(
        os.environ["MLFLOW_TRACKING_URI"],
        what="the MLflow server",
        key="MLFLOW_TRACKING_URI",
        fix="start the server, point MLFLOW_TRACKING_URI at it, or drop mlflow from "
        "track.report_to",
    )
    cap_mlflow_retries()
    mlflow.set_experiment(cfg.track.experiment)
    run = mlflow.start_run(
        run_name=run_dir.name,
        tags={"ft.run_id": run_dir.name, "ft.config_sha256": cfg.hash(), "ft.seed": str(cfg.seed)},
    )
    return _MLflow(mlflow, run)


class _WandB:
    def __init__(self, run):
        self.run = run

    def log(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def _wandb(cfg, run_dir: Path, key: str):
    wandb = _require("wandb", key, cfg, lambda: __import__("wandb"))
    local = Path(cfg.track.dir)
    local.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=cfg.track.experiment,
        name=run_dir.name,
        dir=str(local),
        config=cfg.resolved(),
        tags=[f"config-{cfg.hash()[:12]}"],
    )
    return _WandB(run)
