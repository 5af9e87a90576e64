"""``make init``: a configuration drafted from a table, and clear refusals of data it cannot be drafted from."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tabloop.config import (
    EvaluateConfig,
    PreprocessingConfig,
    PromotionGateConfig,
    RandomSplit,
    TimeSplit,
    TrainConfig,
    TuneConfig,
    TunedConfig,
    ValidationConfig,
    load_data_config,
    load_evaluate_config,
    load_registry_config,
    load_train_config,
    load_tune_config,
    load_tuned_config,
)
from tabloop.config.monitor import dataset_defaults, load_monitor_config
from tabloop.drafting import DraftError, DraftRequest, draft_dataset
from tabloop.drafting.templated import monitor_defaults
from tabloop.layout import DATASETS_FILE, Layout, load_datasets


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A repository root holding only a datasets file of its own (not this repository's, which `make init` grows)."""
    (tmp_path / "configs").mkdir()
    (tmp_path / DATASETS_FILE).write_text("# The datasets.\ndefault: example\ndatasets:\n  - example\n")
    return tmp_path


def customers(n: int = 200) -> pl.DataFrame:
    """A churn-like table: an id, a date, text and numeric columns with gaps, a yes/no target (minority yes)."""
    return pl.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "signed_up": [str(dt.date(2024, 1, 1) + dt.timedelta(days=i % 120)) for i in range(n)],
            "plan": [("basic", "pro", "team")[i % 3] for i in range(n)],
            "paperless": [("Yes", "No")[i % 2] for i in range(n)],
            "monthly": [20.0 + (i % 50) if i % 17 else None for i in range(n)],
            "tenure": [i % 72 for i in range(n)],
            "Churn": [("No", "No", "Yes")[i % 3] for i in range(n)],
        }
    )


def write(frame: pl.DataFrame, root: Path, name: str = "customers.csv") -> str:
    path = root / "data" / "external" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return str(path)


def test_a_table_is_drafted_into_a_configuration_that_loads(root: Path) -> None:
    data = write(customers(), root)
    draft = draft_dataset(DraftRequest("churn", data, "Churn", id="customer_id"), root)

    config = load_data_config(draft.directory / "data.yaml")
    assert {p.name for p in draft.files} == {
        "data.yaml",
        "train.yaml",
        "evaluate.yaml",
        "registry.yaml",
        "monitor.yaml",
        "tune.yaml",
        "tuned.yaml",
    }
    assert "churn" in load_datasets(root).datasets
    assert config.adapter is None
    assert config.source.dir == Path("data/external")
    assert config.entity.id == "customer_id"
    assert config.label.positive == ["Yes"]  # the minority value
    assert isinstance(config.split, RandomSplit)
    assert config.split.kind == "stratified"
    features = config.contract.features
    assert features["plan"].kind == "categorical"
    assert features["plan"].values == ["basic", "pro", "team"]
    assert features["paperless"].values == ["No", "Yes"]  # strings, not YAML 1.1 booleans
    assert features["monthly"].nullable
    assert (features["tenure"].min, features["tenure"].max) == (0, 71)
    assert "customer_id" not in features
    assert "Churn" not in features
    text = (draft.directory / "data.yaml").read_text()
    assert "the minority class" in text
    assert "widen them to what is possible" in text


def test_a_time_column_gives_a_time_split_and_a_unique_column_is_left_out(root: Path) -> None:
    data = write(customers(), root)
    draft = draft_dataset(DraftRequest("churn", data, "Churn", positive="Yes", time="signed_up"), root)
    config = load_data_config(draft.directory / "data.yaml")
    assert isinstance(config.split, TimeSplit)
    assert config.split.train.start == dt.date(2024, 1, 1)
    assert config.split.train.end < config.split.valid.start <= config.split.valid.end < config.split.test.start
    assert config.entity.time == "signed_up"
    assert "customer_id" not in config.contract.features  # too unique to be a feature
    assert any("'customer_id'" in w and "identifier" in w for w in draft.warnings)


def test_an_existing_dataset_is_not_overwritten(root: Path) -> None:
    data = write(customers(), root)
    draft_dataset(DraftRequest("churn", data, "Churn"), root)
    before = (root / "configs" / "churn" / "data.yaml").read_bytes()
    with pytest.raises(DraftError, match="NAME: a dataset 'churn' exists already"):
        draft_dataset(DraftRequest("churn", data, "plan"), root)
    assert (root / "configs" / "churn" / "data.yaml").read_bytes() == before
    shutil.rmtree(root / "configs" / "churn")  # moved away by hand: the list still names it
    with pytest.raises(DraftError, match=r"configs/datasets\.yaml lists a dataset 'churn' already"):
        draft_dataset(DraftRequest("churn", data, "plan"), root)


@pytest.mark.parametrize(
    ("change", "request_args", "message"),
    [
        (lambda f: f.head(0), {}, "has no rows"),
        (lambda f: f.with_columns(Churn=pl.lit("No")), {}, "TARGET: 'Churn' has a single value"),
        (
            lambda f: f.with_columns(Churn=pl.when(pl.int_range(pl.len()) < 5).then(None).otherwise("Churn")),
            {},
            "TARGET: 'Churn' has no value in 5 of 200 rows; fill them or drop those rows",
        ),
        (lambda f: f, {"target": "churned"}, "TARGET: 'churned' is not a column of the data"),
        (lambda f: f, {"target": "plan", "task": "binary"}, "TARGET: 'plan' has 3 values; give POSITIVE=<value>"),
        (lambda f: f, {"task": "ordinal"}, "TASK: 'ordinal' is not a task; choose binary, multiclass, regression"),
        (lambda f: f, {"task": "multiclass"}, "TASK: 'Churn' has two values; that is TASK=binary"),
        (
            lambda f: f,
            {"target": "tenure", "task": "multiclass"},
            "TASK: 'tenure' has 72 values, more than the 20 classes a draft takes; merge them into fewer classes "
            "first, or give TASK=regression",
        ),
        (
            lambda f: f,
            {"target": "plan", "task": "regression"},
            "TARGET: 'plan' is no number in 200 rows (row 1: 'basic', row 2: 'pro', row 3: 'team')",
        ),
        (
            lambda f: f.with_columns(plan=pl.when(pl.int_range(pl.len()) < 4).then(pl.lit("solo")).otherwise("plan")),
            {"target": "plan"},
            "TARGET: 'plan' has classes too rare to appear in every split: 'solo' (4 rows); each needs 10 rows",
        ),
        (
            lambda f: f.with_columns(code=pl.format("K{}", pl.int_range(pl.len()) % 30)),
            {"target": "code"},
            "TARGET: 'code' has 30 text values, more than the 20 classes a draft takes",
        ),
        (lambda f: f, {"positive": "maybe"}, "POSITIVE: 'maybe' is not a value of 'Churn'"),
        (
            lambda f: f.with_columns(customer_id=pl.col("customer_id").str.slice(0, 5)),
            {"id": "customer_id"},
            "ID: 'customer_id' repeats in 200 rows",
        ),
        (
            lambda f: f.with_columns(
                signed_up=pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("31/02/2024")).otherwise("signed_up")
            ),
            {"time": "signed_up"},
            "TIME: 'signed_up' value '31/02/2024' (row 7) does not parse as a date or a time",
        ),
    ],
)
def test_bad_data_is_refused_naming_the_column(
    root: Path, change: object, request_args: dict[str, str], message: str
) -> None:
    data = write(change(customers()), root)  # type: ignore[operator]
    arguments = {"target": "Churn", **request_args}
    with pytest.raises(DraftError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        draft_dataset(DraftRequest("churn", data, **arguments), root)
    assert not (root / "configs" / "churn").exists()
    assert "churn" not in load_datasets(root).datasets


def test_a_column_empty_in_every_row_is_left_out_with_a_note(root: Path) -> None:
    data = write(customers().with_columns(fax=pl.lit(None, pl.String)), root)
    draft = draft_dataset(DraftRequest("churn", data, "Churn"), root)
    assert any("'fax' is empty in every row" in w for w in draft.warnings)
    config = load_data_config(draft.directory / "data.yaml")
    assert "fax" not in config.contract.features
    assert "fax" not in config.tables["customers"].columns


def test_the_make_target_drafts_and_explains_a_bad_request(root: Path) -> None:
    import subprocess
    import sys

    data = write(customers().with_columns(Churn=pl.lit("No")), root)
    result = subprocess.run(
        [sys.executable, "-m", "tabloop.commands.app", "init", "churn", data, "--target", "Churn"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "init failed: TARGET: 'Churn' has a single value" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("time", [None, "signed_up"], ids=["no event time", "an event time"])
def test_every_key_a_draft_does_not_infer_holds_the_typed_default(root: Path, time: str | None) -> None:
    """One source of defaults: what `make init` drafts and what a key left out means are the same values."""
    draft = draft_dataset(DraftRequest("churn", write(customers(), root), "Churn", time=time), root)
    where = Layout("churn", root)
    assert draft.directory == where.configs

    assert load_train_config(where.train_config) == TrainConfig()
    assert load_train_config(where.train_config, where.tuned_config) == TrainConfig()  # nothing tuned yet
    assert load_tune_config(where.tune_config) == TuneConfig()
    assert load_tuned_config(where.tuned_config) == TunedConfig()
    evaluate = load_evaluate_config(where.evaluate_config)
    assert evaluate.slices == ["plan", "paperless"]  # inferred: categorical features of few values
    assert evaluate.model_copy(update={"slices": []}) == EvaluateConfig()
    registry = load_registry_config(where.registry_config)
    assert (registry.experiment, registry.model_name) == ("churn", "churn")  # inferred: the dataset's name
    assert registry.gate.min_score == 0.55  # inferred: a floor for the drafted metric, ROC AUC
    assert registry.gate.metric == "roc_auc"  # inferred: the task's primary metric, written out
    assert registry.gate.model_copy(update={"min_score": None, "metric": None}) == PromotionGateConfig()
    data = load_data_config(where.data_config)
    assert (data.preprocessing, data.validation) == (PreprocessingConfig(), ValidationConfig())

    monitor = load_monitor_config(where.monitor_config, where)
    paths = dataset_defaults(where)
    assert monitor.replay.traffic == paths["replay"]["traffic"]  # the dataset's paths: from its layout
    defaults = monitor_defaults()
    assert (monitor.gate, monitor.retrain) == (defaults.gate, defaults.retrain)
    for section in ("replay", "reports"):
        exclude = set(paths[section])
        drafted = getattr(monitor, section).model_dump(exclude=exclude)
        assert drafted == getattr(defaults, section).model_dump(exclude=exclude)
    clock = "synthetic_start" in where.monitor_config.read_text()
    assert clock is (time is None)  # the replay's clock is written out where there is no event time to send on


def test_the_task_is_inferred_from_the_target_and_the_draft_says_why(root: Path) -> None:
    rng = np.random.default_rng(0)
    frame = customers().with_columns(price=pl.Series(np.round(np.exp(rng.normal(4, 1, 200)), 2)))
    data = write(frame, root)

    classes = load_data_config(draft_dataset(DraftRequest("plans", data, "plan"), root).directory / "data.yaml")
    assert (classes.label.task, classes.label.classes) == ("multiclass", ["basic", "pro", "team"])
    assert classes.contract.target.outputs == 3
    assert isinstance(classes.split, RandomSplit)
    assert classes.split.kind == "stratified"
    assert "3 distinct values (at most 20 are drafted as classes)" in (root / "configs/plans/data.yaml").read_text()

    tenure = load_data_config(draft_dataset(DraftRequest("tenure", data, "tenure"), root).directory / "data.yaml")
    assert (tenure.label.task, tenure.label.transform) == ("regression", "none")  # 0 to 71, evenly spread
    assert isinstance(tenure.split, RandomSplit)
    assert tenure.split.kind == "random"
    assert "a number with 72 distinct values" in (root / "configs/tenure/data.yaml").read_text()

    prices = load_data_config(draft_dataset(DraftRequest("prices", data, "price"), root).directory / "data.yaml")
    gate = load_registry_config(Layout("prices", root).registry_config).gate
    assert (gate.metric, gate.min_score) == ("rmse", None)
    assert gate.max_score == pytest.approx(float(frame["price"].std()), rel=1e-3)  # predicting the mean
    spread = float(frame["price"].std())  # the margins are in the target's units, not ROC AUC's
    assert gate.min_improvement == pytest.approx(spread / 1000, rel=0.05)
    assert gate.max_slice_regression == pytest.approx(spread / 50, rel=0.05)
    plans_gate = load_registry_config(Layout("plans", root).registry_config).gate
    assert (plans_gate.metric, plans_gate.max_score) == ("log_loss", pytest.approx(np.log(3), rel=1e-3))
    assert (prices.label.task, prices.label.transform) == ("regression", "log1p")
    assert prices.card.title == "Prices regression"
    assert "positive and skewed" in (root / "configs/prices/data.yaml").read_text()

    binary = load_data_config(draft_dataset(DraftRequest("churn", data, "Churn"), root).directory / "data.yaml")
    assert (binary.label.task, binary.label.positive) == ("binary", ["Yes"])
    assert "task: binary" in (root / "configs/churn/data.yaml").read_text()

    given = draft_dataset(DraftRequest("tenure_classes", data, "paperless", task="binary"), root)
    assert load_data_config(given.directory / "data.yaml").label.task == "binary"


def test_a_target_named_like_a_python_keyword_gets_a_name_the_api_can_use(root: Path) -> None:
    data = write(customers().rename({"plan": "class"}), root)
    config = load_data_config(draft_dataset(DraftRequest("plans", data, "class"), root).directory / "data.yaml")
    assert config.label.column == "class"
    assert config.contract.target.name == "class_label"
