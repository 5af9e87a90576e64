"""DVC stage ``train``: fit the PyTorch model, keep the best epoch, choose the decision threshold.

With ``distributed.nproc`` > 1 in the training configuration, the stage starts itself again under ``torchrun``.
"""

import logging
import subprocess
import sys

import typer
from torch.distributed.elastic.multiprocessing.errors import record

from tabloop.commands.boundary import DatasetOption, PathOption, entry_point
from tabloop.config import load_train_config, tuned_overrides
from tabloop.stages.train import run as train
from tabloop.training.distributed import launched_by_torchrun, torchrun_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@record  # under torchrun: a failing rank's error reaches torchrun's summary
def main(
    dataset: DatasetOption = None,
    config: PathOption = None,
    features: PathOption = None,
    out: PathOption = None,
    reports: PathOption = None,
    checkpoints: PathOption = None,
) -> None:
    """Train the network on the training split with early stopping on the validation split."""
    with entry_point("train") as settings:
        where = settings.layout(dataset)
        train_config = load_train_config(config or where.train_config, None if config else where.tuned_config)
        if config is None:
            for key, (own, tuned) in tuned_overrides(load_train_config(where.train_config), train_config).items():
                logging.getLogger("pipelines.train").info(
                    "%s: %s from %s (train.yaml has %s)", key, tuned, where.tuned_config, own
                )
        nproc = train_config.distributed.nproc
        if nproc > 1 and not launched_by_torchrun():
            command = torchrun_command(nproc, "pipelines.train", sys.argv[1:])
            raise typer.Exit(subprocess.run(command, check=False).returncode)
        train(
            train_config,
            features or where.features,
            out or where.bundle,
            reports or where.train_reports,
            checkpoints or where.checkpoints,
        )


if __name__ == "__main__":
    app()
