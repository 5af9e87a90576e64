"""``make init``: a configuration drafted from a table, and clear refusals of data it cannot be drafted from."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import TypeAdapter, ValidationError

from serving.schemas import row_model
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
from tabloop.data.validate import validate_table
from tabloop.drafting import DraftError, DraftRequest, draft_dataset
from tabloop.drafting.templated import monitor_defaults
from tabloop.features.build import add_label
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
        "retrained.yaml",
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
    assert features["plan"].values is None  # open: an unseen plan is predicted and reported, not refused
    assert features["paperless"].dtype == "string"  # strings, not YAML 1.1 booleans
    assert features["monthly"].nullable
    assert (features["tenure"].min, features["tenure"].max) == (0, None)  # never negative; no observed maximum
    assert "customer_id" not in features
    assert "Churn" not in features
    assert "signed_up" not in features  # dates as text: no category of 120 values
    assert any("'signed_up' holds dates or times" in w and "TIME=signed_up" in w for w in draft.warnings)
    text = (draft.directory / "data.yaml").read_text()
    assert "the minority class" in text
    assert "# 3 values seen (basic, pro, team)" in text  # the observed, for the reviewer
    assert "observed 0 to 71" in text
    assert 'key: ["customer_id"]' in text


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


def test_rows_without_a_label_are_left_out_and_said_and_a_class_written_as_floats_is_an_integer(root: Path) -> None:
    """A pandas export of 0/1 with gaps reads 1.0, 0.0 and empty: the draft names the classes 1 and 0, declares the
    column int64 (ingest reads 1.0 as 1), and leaves the unlabelled rows out with a note."""
    churned = [None if i % 40 == 0 else float(i % 3 == 0) for i in range(200)]
    data = write(customers().with_columns(churned=pl.Series(churned, dtype=pl.Float64)).drop("Churn"), root)
    draft = draft_dataset(DraftRequest("churn", data, "churned"), root)
    config = load_data_config(draft.directory / "data.yaml")
    assert (config.label.task, config.label.positive, config.label.unlabelled) == ("binary", [1], "drop")
    assert config.tables["customers"].columns["churned"].dtype == "int64"
    assert config.tables["customers"].columns["churned"].nullable
    assert config.contract.target.name == "churned_1"
    assert "TARGET: 'churned' has no value in 5 of 200 rows: they are left out" in " ".join(draft.warnings)

    frame = pl.DataFrame({"churned": [1.0, 0.0, None, 1.0]})  # a float column still matches positive: [1]
    labelled, unlabelled = add_label(frame, config)
    assert (labelled["churned_1"].to_list(), unlabelled) == ([True, False, True], 1)


def test_the_gates_bounds_come_from_the_labelled_rows(root: Path) -> None:
    """Rows without a target value leave the drafted ceilings alone: the RMSE of predicting the mean (no NaN), the
    log loss of predicting each class's share (no class of the missing)."""
    gaps = pl.int_range(pl.len()) % 10 == 0
    frame = customers().with_columns(
        spend=pl.when(gaps).then(None).otherwise(pl.col("tenure") * 2.5),
        Churn=pl.when(gaps).then(None).otherwise("plan"),
    )
    data = write(frame, root)
    spend = draft_dataset(DraftRequest("spend", data, "spend"), root)
    gate = load_registry_config(spend.directory / "registry.yaml").gate
    labelled = frame["spend"].drop_nulls().to_numpy()
    assert gate.max_score == pytest.approx(np.std(labelled, ddof=1), rel=1e-3)
    assert gate.min_improvement > 0
    plans = draft_dataset(DraftRequest("plans", data, "Churn"), root)  # the plan again, with gaps
    assert load_data_config(plans.directory / "data.yaml").label.task == "multiclass"
    labelled_plans = frame["Churn"].drop_nulls()
    shares = labelled_plans.value_counts()["count"].to_numpy() / labelled_plans.len()
    ceiling = load_registry_config(plans.directory / "registry.yaml").gate.max_score
    assert ceiling == pytest.approx(-(shares * np.log(shares)).sum(), abs=1e-4)


def test_a_file_as_it_was_exported_is_drafted_or_refused_saying_why(root: Path) -> None:
    """A CSV separated by semicolons is refused naming the separator; a parquet file's categoricals are text; a
    column named as one of the API's or the prediction log's own is left out of the features with a note."""
    frame = customers()
    path = root / "data" / "external" / "semis.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path, separator=";")
    with pytest.raises(DraftError, match=r"reads as one column .*seem separated by ';': write it with commas"):
        draft_dataset(DraftRequest("semis", str(path), "Churn"), root)

    typed = frame.with_columns(
        pl.col("plan").cast(pl.Categorical), probability=pl.col("tenure") / 100, label=pl.col("paperless")
    )
    typed.write_parquet(root / "data" / "external" / "typed.parquet")
    draft = draft_dataset(DraftRequest("typed", str(root / "data" / "external" / "typed.parquet"), "Churn"), root)
    features = load_data_config(draft.directory / "data.yaml").contract.features
    assert features["plan"].kind == "categorical"
    assert not {"probability", "label"} & set(features)
    notes = " ".join(draft.warnings)
    assert "column 'probability' has a name the API or the prediction log uses" in notes
    assert "column 'label' has a name the API or the prediction log uses" in notes


def test_a_marker_of_missing_numbers_becomes_a_null_value_and_the_column_a_number(root: Path) -> None:
    """UCI's tables write a missing number as ``?``: the column reads as text, and would be drafted as a category
    of every value seen. The draft adds the marker to source.null_values, which the ingest stage reads with."""
    frame = customers().with_columns(
        chol=pl.Series([("?" if i % 25 == 0 else str(150 + i % 90)) for i in range(200)]),
        grade=pl.Series([("-", "A", "B")[i % 3] for i in range(200)]),  # text: its "-" is a value
    )
    draft = draft_dataset(DraftRequest("heart", write(frame, root, "heart.csv"), "Churn"), root)
    config = load_data_config(draft.directory / "data.yaml")
    assert config.source.null_values == ["NA", "", "?"]
    assert (config.contract.features["chol"].kind, config.contract.features["chol"].nullable) == ("numeric", True)
    assert config.contract.features["grade"].kind == "categorical"
    assert "column 'chol': '?' read as a missing value" in " ".join(draft.warnings)
    assert (
        "# missing values, as written in columns of numbers: ? in chol" in (draft.directory / "data.yaml").read_text()
    )


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
            lambda f: f.with_columns(Churn=pl.lit(None, dtype=pl.String)),
            {},
            "TARGET: 'Churn' has no value in any row; nothing to learn",
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
        (  # no value is a date: polars finds no format to try at all
            lambda f: f.with_columns(plan=pl.format("plan {}", pl.int_range(pl.len()) % 3)),
            {"time": "plan"},
            "TIME: 'plan' value 'plan 0' (row 0) does not parse as a date or a time",
        ),
        (
            lambda f: f.with_columns(signed_up=pl.lit("2020-13-45")),
            {"time": "signed_up"},
            "TIME: 'signed_up' value '2020-13-45' (row 0) does not parse as a date or a time",
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
    assert monitor.gate == defaults.gate
    inferred = {  # sized from the data: tests/unit/test_drafting.py::test_monitoring_is_sized_from_the_data
        "replay": {"synthetic_interval_s", "speedup"},
        "reports": {"dashboard_features", "min_rows", "min_labels"},
        "retrain": {"evaluation_rows", "validation_rows"},
    }
    for section in ("replay", "reports", "retrain"):
        exclude = set(paths.get(section, {})) | inferred[section]
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


@pytest.mark.parametrize(
    ("positive", "name"), [("<=50K", "income_le_50k"), (">50K", "income_gt_50k"), ("A+", "income_a_plus")]
)
def test_a_positive_class_with_signs_gives_a_readable_target_name(root: Path, positive: str, name: str) -> None:
    income = [(positive, "other")[i % 2] for i in range(200)]
    data = write(customers().with_columns(income=pl.Series(income)), root)
    draft = draft_dataset(DraftRequest("incomes", data, "income", positive=positive), root)
    assert load_data_config(draft.directory / "data.yaml").contract.target.name == name


def loans(n: int = 400) -> pl.DataFrame:
    """A loans-like table: row numbers, a precise rate unique in almost every row, a share, a signed number, a
    skewed amount, a constant, a yes/no target."""
    return pl.DataFrame(
        {
            "rownames": list(range(1, n + 1)),
            "monthly_rate": [2094 + 37 * i + (i % 7) for i in range(n)],
            "utilisation": [round((i % 97) / 97, 6) for i in range(n)],
            "balance_change": [float((i % 41) - 20) + 0.123456789 for i in range(n)],
            "income": [1000.0 * (1.05 ** (i % 150)) + 0.015625 for i in range(n)],
            "currency": ["EUR"] * n,
            "state": [("CA", "NY", "TX", "WA")[i % 4] for i in range(n)],
            "default": [("no", "no", "no", "yes")[i % 4] for i in range(n)],
        }
    )


def test_the_draft_enforces_the_possible_and_comments_the_observed(root: Path) -> None:
    frame = loans()
    draft = draft_dataset(DraftRequest("loans", write(frame, root, "loans.csv"), "default"), root)
    config = load_data_config(draft.directory / "data.yaml")
    features = config.contract.features
    assert config.contract.entity == "Loan"  # one loan, a list of loans
    assert (features["utilisation"].min, features["utilisation"].max) == (0, 1)  # a share
    assert (features["income"].min, features["income"].max) == (0, None)  # never negative: no observed maximum
    assert (features["balance_change"].min, features["balance_change"].max) == (None, None)  # signed: no bound
    assert features["state"].values is None  # open
    assert "monthly_rate" in features  # precise, not an identifier: not a run of row numbers
    assert "rownames" not in features
    assert "currency" not in features
    assert any("'currency' holds one value in every row" in w for w in draft.warnings)
    text = (draft.directory / "data.yaml").read_text()
    assert "consider preprocessing.transforms {income: log1p}" in text
    assert "one row in the API's words: one loan, a list of loans" in text
    shares = next(line for line in text.splitlines() if line.strip().startswith('"utilisation": {dtype'))
    assert "identifier" not in shares  # a precise float is unique per row without naming rows
    assert "unique in every row: rownames, monthly_rate" in text
    table = config.tables[config.entity.table]
    outcome = validate_table(frame, config.entity.table, table, {})
    assert outcome.report.rejected == 0  # the draft refuses no row of the data it was drafted from


def test_a_draft_accepts_what_production_may_send_beyond_the_sample(root: Path) -> None:
    draft = draft_dataset(DraftRequest("loans", write(loans(), root, "loans.csv"), "default"), root)
    row = TypeAdapter(row_model(load_data_config(draft.directory / "data.yaml").contract))
    request = {"monthly_rate": 99_999_999, "utilisation": 0.5, "balance_change": -1e6, "income": 1e9}
    assert row.validate_python(request | {"state": "IA"}).state == "IA"  # a real state absent from the data
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        row.validate_python(request | {"state": "IA", "income": -5.0})


@pytest.mark.parametrize(
    ("rows", "positives", "interval_s", "held_out"),
    [
        (200, 0.2, 21600.0, 100),  # 30 replayed rows: one window
        (569, 0.37, 7200.0, 100),  # 85 replayed rows: the first (short) week is judged on 30 rows
        (891, 0.38, 10800.0, 100),  # 133 replayed rows over two weeks
        (4454, 0.28, 3600.0, 100),  # credit's size: 668 rows over four weeks
        (9853, 0.05, 3600.0, 300),  # a loans table: eight weeks; 15 positives in each hold-out
        (100_000, 0.5, 300.0, 100),
    ],
)
def test_monitoring_is_sized_from_the_data(
    root: Path, rows: int, positives: float, interval_s: float, held_out: int
) -> None:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "amount": rng.gamma(2.0, 100.0, rows),
            "state": rng.choice(["CA", "NY", "TX"], rows),
            "score": rng.normal(size=rows),
            "label": np.where(np.arange(rows) < round(rows * positives), "yes", "no"),
        }
    )
    draft = draft_dataset(DraftRequest("loans", write(frame, root, "loans.csv"), "label"), root)
    monitor = load_monitor_config(draft.directory / "monitor.yaml", Layout("loans", root))
    assert monitor.replay.synthetic_interval_s == interval_s
    replayed = int(rows * 0.15)
    assert replayed * interval_s / monitor.replay.speedup <= 120  # the replay takes two minutes at most
    windows = replayed * interval_s / (7 * 86400)
    assert windows < 12
    assert windows >= 2 or replayed < 300  # several weekly windows when the rows fill them
    judged = monitor.reports.min_rows
    assert judged == monitor.reports.min_labels == min(100, max(30, replayed // 3))
    sent = monitor.replay.synthetic_start.timestamp() + np.arange(replayed) * interval_s
    weeks = np.floor((sent / 86400 + 3) / 7)  # calendar weeks from Monday (1970-01-01 was a Thursday)
    # one window is judged, unless the test split is too small for any (fewer than 60 rows: 30 in each half)
    assert np.unique(weeks, return_counts=True)[1].max() >= judged or replayed < 2 * 30
    assert (monitor.retrain.evaluation_rows, monitor.retrain.validation_rows) == (held_out, held_out)
    assert monitor.reports.dashboard_features == ["amount", "score", "state"]  # numbers first
