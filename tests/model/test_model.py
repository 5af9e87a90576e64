"""The network and its bundle: shapes, learning, a lossless save/load, clear errors for broken bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from helpers import TARGET
from synthetic import Probe
from tabloop.features.fitting import frame_columns
from tabloop.runtime.bundle import LINEAGE_FILE, MODEL_FILE, WEIGHTS_FILE, Bundle, BundleError, Predictor
from tabloop.runtime.contract import TargetSpec
from tabloop.runtime.inference import FoldedNetwork
from tabloop.runtime.lineage import GitState, Lineage, LineageMetrics
from tabloop.runtime.model_args import ModelArgs, embedding_dim
from tabloop.runtime.network import TabularNet
from tabloop.runtime.task import combine
from tabloop.training.objective import Objective
from tabloop.training.tensors import SplitTensors

BINARY = Objective(TargetSpec())
ARGS = ModelArgs(cardinalities=[5, 9], embedding_dims=[3, 4], n_numeric=6, hidden=[16, 8], dropout=0.0, members=2)


def batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    categorical = torch.stack([torch.randint(0, 5, (n,), generator=g), torch.randint(0, 9, (n,), generator=g)], 1)
    return categorical, torch.randn(n, 6, generator=g)


def test_members_give_one_logit_each_and_probabilities_average() -> None:
    torch.manual_seed(0)
    net = TabularNet(ARGS).eval()
    categorical, numeric = batch(10)
    logits = net(categorical, numeric)
    assert logits.shape == (10, 2, 1)
    assert not torch.allclose(logits[:, 0], logits[:, 1])  # independently initialised
    proba = BINARY.predict(net, SplitTensors(categorical, numeric, torch.zeros(10)), 4)
    assert np.allclose(proba, torch.sigmoid(logits[..., 0]).mean(1).detach().numpy())
    assert ((proba > 0) & (proba < 1)).all()


def test_embedding_sizes_grow_slowly_and_are_capped() -> None:
    assert embedding_dim(3) == 3
    assert embedding_dim(200) > embedding_dim(20) > embedding_dim(3)
    assert embedding_dim(10_000, max_dim=32) == 32
    assert embedding_dim(2, scale=0.1) == 2


def test_tiny_model_overfits_tiny_batch() -> None:
    torch.manual_seed(0)
    net = TabularNet(ARGS)
    categorical, numeric = batch(32, seed=1)
    target = torch.rand(32, generator=torch.Generator().manual_seed(2)).round()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(300):
        logits = net(categorical, numeric)[..., 0]
        loss = loss_fn(logits, target.unsqueeze(1).expand_as(logits))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    assert loss.item() < 0.05
    proba = BINARY.predict(net, SplitTensors(categorical, numeric, target), 32)
    assert ((proba >= 0.5) == target.numpy().astype(bool)).all()


def test_save_load_round_trip_gives_identical_predictions(
    trained: dict[str, Path], stage_outputs: dict[str, Path], tmp_path: Path
) -> None:
    bundle = Bundle.load(trained["bundle"])
    copy = tmp_path / "copy"
    bundle.save(copy)
    loaded = Bundle.load(copy)
    assert loaded.digest() == bundle.digest()
    assert (loaded.threshold, loaded.scaling) == (bundle.threshold, bundle.scaling)
    test = pl.read_parquet(stage_outputs["features"] / "test.parquet")
    columns = frame_columns(test, bundle.contract)
    original, restored = Predictor(bundle).outputs(columns), Predictor(loaded).outputs(columns)
    assert np.array_equal(original, restored)
    answers = Predictor(loaded).answer(columns)
    if bundle.threshold is not None:
        assert np.array_equal(answers.label, answers.probability >= bundle.threshold)


def test_predictor_accepts_nulls_and_unseen_categories(
    trained: dict[str, Path], stage_outputs: dict[str, Path]
) -> None:
    predictor = Predictor.from_directory(trained["bundle"])
    test = pl.read_parquet(stage_outputs["features"] / "test.parquet").head(3)
    columns = frame_columns(test, predictor.bundle.contract)
    probe = Probe.of(predictor.bundle.contract)
    if probe.categorical is not None:
        columns[probe.categorical] = [probe.unseen, None, columns[probe.categorical][2]]
    columns[probe.numeric] = np.array([np.nan, columns[probe.numeric][1], np.nan])
    predicted = predictor.outputs(columns)
    assert predicted.shape == (3,) if predictor.bundle.contract.target.classes is None else (3, TARGET.outputs)
    assert np.isfinite(predicted).all()


def test_digest_ignores_lineage_but_not_weights(trained: dict[str, Path]) -> None:
    bundle = Bundle.load(trained["bundle"])
    lineage = Lineage(
        bundle_sha256="0" * 64,
        git=GitState(commit="abc", dirty=False),
        data={},
        params={},
        metrics=LineageMetrics(valid_roc_auc=0.5, test={}),
    )
    assert bundle.with_lineage(lineage).digest() == bundle.digest()
    weights = {k: v.copy() for k, v in bundle.weights.items()}
    name = next(k for k, v in weights.items() if v.dtype.kind == "f")
    weights[name] += 1e-3
    assert replace(bundle, weights=weights).digest() != bundle.digest()


def test_broken_bundles_raise_clear_errors(trained: dict[str, Path], tmp_path: Path) -> None:
    broken = Path(shutil.copytree(trained["bundle"], tmp_path / "bundle"))
    (broken / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match=r"not a model bundle, missing weights\.safetensors"):
        Bundle.load(broken)

    newer = Path(shutil.copytree(trained["bundle"], tmp_path / "newer"))
    model = json.loads((newer / MODEL_FILE).read_text())
    (newer / MODEL_FILE).write_text(json.dumps({**model, "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99, this code reads 1"):
        Bundle.load(newer)

    garbled = Path(shutil.copytree(trained["bundle"], tmp_path / "garbled"))
    (garbled / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(BundleError, match="cannot read the model bundle"):
        Bundle.load(garbled)

    unknown_origin = Path(shutil.copytree(trained["bundle"], tmp_path / "lineage"))
    (unknown_origin / LINEAGE_FILE).write_text(json.dumps({"git": "abc"}))
    problems = r"lineage.json: not a lineage record \(bundle_sha256: Field required; git: Input should be"
    with pytest.raises(BundleError, match=problems):
        Bundle.load(unknown_origin)

    bundle = Bundle.load(trained["bundle"])
    wider = ModelArgs(**{**bundle.args.to_dict(), "hidden": [8]})
    with pytest.raises(BundleError, match="do not fit the network's arguments"):
        Predictor(replace(bundle, args=wider))


def test_network_module_imports_no_serving_or_tracking_code() -> None:
    code = (
        "import sys, tabloop.runtime.network, tabloop.runtime.bundle\n"
        "bad = [m for m in ('mlflow', 'fastapi', 'evidently') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_service_loads_and_serves_a_bundle_without_importing_torch(trained: dict[str, Path]) -> None:
    code = (
        "import sys, serving.__main__\n"
        "from pathlib import Path\n"
        "from tabloop.runtime.bundle import Predictor\n"
        "predictor = Predictor.from_directory(Path(sys.argv[1]))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code, str(trained["bundle"])], check=True)


@pytest.mark.parametrize(
    "args",
    [
        ModelArgs(cardinalities=[5, 9], embedding_dims=[3, 4], n_numeric=6, hidden=[16, 8], members=3),
        ModelArgs(cardinalities=[7], embedding_dims=[2], n_numeric=0, hidden=[4], members=1),
        ModelArgs(cardinalities=[], embedding_dims=[], n_numeric=3, hidden=[], members=2),
        ModelArgs(cardinalities=[5], embedding_dims=[3], n_numeric=6, hidden=[16], members=4, embedded=4),
        ModelArgs(cardinalities=[5], embedding_dims=[3], n_numeric=6, hidden=[16, 8], members=4, ensemble="batch"),
        ModelArgs(cardinalities=[], embedding_dims=[], n_numeric=2, hidden=[4], embedded=2, ensemble="batch"),
        ModelArgs(cardinalities=[5], embedding_dims=[3], n_numeric=6, hidden=[16], embedded=4, raw=True),
        ModelArgs(cardinalities=[5, 9], embedding_dims=[3, 4], n_numeric=6, hidden=[16], outputs=3, linear=True),
        ModelArgs(cardinalities=[], embedding_dims=[], n_numeric=3, hidden=[8], ensemble="batch", linear=True),
    ],
    ids=[
        "independent",
        "one member",
        "no hidden layer",
        "periodic",
        "batch ensemble",
        "periodic batch ensemble",
        "periodic beside raw numbers",
        "linear path",
        "linear path, batch ensemble, no categories",
    ],
)
def test_the_weight_shapes_the_bundle_checks_are_the_networks_state(args: ModelArgs) -> None:
    state = TabularNet(args).state_dict()
    assert args.weight_shapes() == {name: tuple(tensor.shape) for name, tensor in state.items()}
    numbers = sum(int(np.prod(shape)) for name, shape in args.weight_shapes().items() if "tracked" not in name)
    assert numbers == args.parameters()  # the size bound a bundle is checked against counts the same tensors


@pytest.mark.parametrize("ensemble", ["independent", "batch"])
@pytest.mark.parametrize(
    ("embedded", "raw", "linear"),
    [(0, False, False), (4, False, False), (4, True, False), (4, False, True)],
    ids=["numbers as they are", "periodic embeddings", "periodic beside raw numbers", "with a linear path"],
)
@pytest.mark.parametrize("hidden", [[], [16], [16, 8]])
@pytest.mark.parametrize("categories", [True, False], ids=["with categories", "numbers only"])
def test_folded_network_computes_what_the_pytorch_network_computes(
    categories: bool, hidden: list[int], embedded: int, raw: bool, linear: bool, ensemble: str
) -> None:
    columns = 2 if categories else 0
    args = ModelArgs(
        cardinalities=[5, 9][:columns],
        embedding_dims=[3, 4][:columns],
        n_numeric=6,
        hidden=hidden,
        dropout=0.2,
        members=3,
        embedded=embedded,
        frequencies=5,
        numeric_dim=3,
        raw=raw,
        ensemble=ensemble,
        linear=linear,
    )
    assert_folds_exactly(args)


@pytest.mark.parametrize("ensemble", ["independent", "batch"])
@pytest.mark.parametrize("linear", [False, True], ids=["MLP", "with a linear path"])
@pytest.mark.parametrize("hidden", [[], [16]])
def test_folded_network_of_categories_only_computes_what_the_pytorch_network_computes(
    hidden: list[int], linear: bool, ensemble: str
) -> None:
    args = ModelArgs(
        cardinalities=[5, 9], embedding_dims=[3, 4], n_numeric=0, hidden=hidden, members=3, ensemble=ensemble,
        linear=linear,
    )  # fmt: skip
    assert_folds_exactly(args)


def assert_folds_exactly(args: ModelArgs) -> None:
    """Train a little (weights and batch-norm statistics leave their initial values), then compare the folded
    network with PyTorch's on a table and on a request's few rows."""
    columns, numbers = len(args.cardinalities), args.n_numeric
    torch.manual_seed(0)
    net = TabularNet(args, frequency_scale=0.5)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for seed in range(20):
        categorical, numeric = batch(64, seed=seed)
        logits = net(categorical[:, :columns], numeric[:, :numbers])[..., 0]
        target = torch.rand(64, generator=torch.Generator().manual_seed(seed)).round()
        torch.nn.functional.binary_cross_entropy_with_logits(logits, target.unsqueeze(1).expand_as(logits)).backward()
        optimizer.step()
        optimizer.zero_grad()
    net.eval()
    categorical, numeric = batch(200, seed=99)
    categorical, numeric = categorical[:, :columns], numeric[:, :numbers]
    expected = BINARY.predict(net, SplitTensors(categorical, numeric, torch.zeros(200)), 64)
    folded = FoldedNetwork.from_weights(args, {name: tensor.numpy() for name, tensor in net.state_dict().items()})
    outputs = folded.outputs(categorical.numpy(), numeric.numpy())
    assert np.allclose(combine(TargetSpec(), outputs, None), expected, atol=1e-6)
    few = folded.outputs(categorical.numpy()[:5], numeric.numpy()[:5])  # a request's rows take another path
    assert np.allclose(combine(TargetSpec(), few, None), expected[:5], atol=1e-6)


def test_requests_and_tables_encode_identically(stage_outputs: dict[str, Path], trained: dict[str, Path]) -> None:
    bundle = Bundle.load(trained["bundle"])
    table = frame_columns(pl.read_parquet(stage_outputs["features"] / "test.parquet"), bundle.contract)
    as_request = {name: list(values) for name, values in table.items()}  # JSON gives lists, with None for nulls
    for name, spec in bundle.contract.features.items():
        if spec.kind != "categorical":
            as_request[name] = [None if np.isnan(v) else float(v) for v in table[name]]
    a, b = bundle.preprocessor.transform(table), bundle.preprocessor.transform(as_request)
    assert np.array_equal(a.categorical, b.categorical)
    assert np.array_equal(a.numeric, b.numeric)
