"""``python -m tools.compare_recipes <dataset> '<json>' ['<json>' ...]``: which training recipe does better on a
dataset's validation split?

Each JSON object is laid over the dataset's ``train.yaml`` (``--base template``: over the template's defaults, what
``make init`` drafts) the way ``tuned.yaml`` is, and trained once per seed on the features ``make train`` built
(``data/<dataset>/features``). It prints every seed's validation score of the task's primary metric and their mean;
the test split is never read. It is how the README's comparisons of the defaults were made, for example::

    python -m tools.compare_recipes hotels '{}' '{"model": {"linear": true}}' --seeds 42,1,2

Nothing is written: the trained weights and checkpoints go to a temporary folder.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from tabloop.config import TrainConfig
from tabloop.config.loading import load_yaml, parse_config
from tabloop.config.tune import overlay
from tabloop.errors import TabloopError
from tabloop.layout import Layout
from tabloop.training.distributed import World
from tabloop.training.loop import fit_model

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


def recipe(start: dict[str, Any], variant: str, seed: int) -> TrainConfig:
    """``variant`` (a JSON object) laid over ``start``, with ``seed``; a TabloopError names what is wrong."""
    try:
        over = json.loads(variant)
    except json.JSONDecodeError as e:
        raise TabloopError(f"{variant!r} is not JSON: {e}") from e
    if not isinstance(over, dict):
        raise TabloopError(f"{variant!r} is not a JSON object of train.yaml's keys")
    return parse_config(TrainConfig, overlay(overlay(start, over), {"seed": seed}), f"{variant} (seed {seed})")


@dataclass(frozen=True)
class Compared:
    """One variant's validation scores, one per seed."""

    variant: str
    metric: str
    scores: list[float]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


def compare(features: Path, start: dict[str, Any], variants: list[str], seeds: list[int]) -> Iterator[Compared]:
    """Each variant laid over ``start`` and trained once per seed on ``features``, as it finishes. Every variant is
    parsed before the first one trains, so a typo stops the run at once."""
    configs = [[recipe(start, variant, seed) for seed in seeds] for variant in variants]
    for variant, runs in zip(variants, configs, strict=True):
        scores, metric = [], ""
        for config in runs:
            with tempfile.TemporaryDirectory() as scratch:
                checkpoint = Path(scratch) / "checkpoint.pt"
                trained = fit_model(config, features, checkpoint, World.from_environment(), progress=False)
            scores.append(trained.result.valid_score)
            metric = trained.result.primary.title
        yield Compared(variant, metric, scores)


@app.command()
def main(
    dataset: Annotated[str, typer.Argument(help="A dataset of configs/datasets.yaml whose features are built.")],
    variants: Annotated[list[str], typer.Argument(help="JSON objects of train.yaml's keys; '{}' is the base.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds: each variant is trained once per seed.")] = "42",
    base: Annotated[Literal["dataset", "template"], typer.Option(help="Lay variants over this.")] = "dataset",
    root: Annotated[Path, typer.Option(help="The repository.")] = Path(),
) -> None:
    where = Layout(dataset, root)
    if not (where.features / "train.parquet").is_file():
        sys.exit(f"{where.features} has no features: run `make train DATASET={dataset}` first")
    try:
        chosen = [int(seed) for seed in seeds.split(",")]
        start = load_yaml(where.train_config) if base == "dataset" else {}
        for row in compare(where.features, start, variants, chosen):
            shown = " ".join(f"{score:.4f}" for score in row.scores)
            print(f"{row.variant}: valid {row.metric} {shown} (mean {row.mean:.4f})", flush=True)
    except (TabloopError, ValueError) as e:
        sys.exit(f"compare_recipes: {e}")


if __name__ == "__main__":
    app()
