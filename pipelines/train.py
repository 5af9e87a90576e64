"""DVC stage ``train``: fit the PyTorch model, keep the best epoch, choose the decision threshold."""

import typer

from tabloop.cli import DatasetOption, PathOption, entry_point
from tabloop.config import load_train_config
from tabloop.training import train

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
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
        train(
            load_train_config(config or where.train_config),
            features or where.features,
            out or where.bundle,
            reports or where.train_reports,
            checkpoints or where.checkpoints,
        )


if __name__ == "__main__":
    app()
