"""DVC stage ``train``: fit the PyTorch model, keep the best epoch, choose the decision threshold."""

from pathlib import Path
from typing import Annotated

import typer

from flightdelay.cli import entry_point
from flightdelay.config import load_train_config
from flightdelay.training import train

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="Training configuration file.")] = Path("configs/train.yaml"),
    features: Annotated[Path, typer.Option(help="Directory of the feature tables.")] = Path("data/features"),
    out: Annotated[Path, typer.Option(help="Directory for the model bundle.")] = Path("models/bundle"),
    reports: Annotated[Path, typer.Option(help="Directory for the training history and metrics.")] = Path(
        "reports/train"
    ),
    checkpoints: Annotated[Path, typer.Option(help="Directory for the resumable checkpoint.")] = Path(
        "models/checkpoints"
    ),
) -> None:
    """Train the network on the training months with early stopping on the validation months."""
    with entry_point("train"):
        train(load_train_config(config), features, out, reports, checkpoints)


if __name__ == "__main__":
    app()
