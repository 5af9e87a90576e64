"""The model bundle: everything needed to predict, in plain files, and the predictor built from it alone.

A bundle directory holds:

- ``model.json``: format version, the network's constructor arguments, the target name, and what the task needs
  to answer: the decision threshold (binary) or the target's scaling (regression);
- ``weights.safetensors``: the weights, in a format that cannot execute code when loaded;
- ``preprocessing.json``: the fitted preprocessing, which embeds the feature contract;
- ``lineage.json`` (once registered): git commit, hashes of the data it saw, parameters and metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from tabloop.errors import TabloopError
from tabloop.runtime.contract import FeatureContract
from tabloop.runtime.inference import FoldedNetwork
from tabloop.runtime.lineage import Lineage
from tabloop.runtime.model_args import ModelArgs
from tabloop.runtime.preprocessing import PREPROCESSING_FILE, Column, Preprocessor
from tabloop.runtime.task import Answers, TargetScaling, combine

FORMAT_VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
LINEAGE_FILE = "lineage.json"
IDENTITY_FILES = (MODEL_FILE, WEIGHTS_FILE, PREPROCESSING_FILE)
BUNDLE_ARTIFACT = "bundle"  # the artifact of a registered pyfunc model that holds its bundle (runtime/pyfunc.py)


class BundleError(TabloopError):
    """A model bundle is missing a file, has an unknown format, or its weights do not fit its arguments."""


def read_lineage(path: Path) -> Lineage | None:
    """The lineage a registered bundle carries (None for one never registered); a BundleError naming each field
    that is missing or wrong."""
    if not path.is_file():
        return None
    try:
        return Lineage.model_validate_json(path.read_bytes())
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'the record'}: {p['msg']}" for p in e.errors())
        raise BundleError(f"{path}: not a lineage record ({problems})") from e


@dataclass(frozen=True)
class Bundle:
    """A trained model with everything it needs: weights, constructor arguments, preprocessing, and the decision
    threshold (binary) or the target's scaling (regression)."""

    args: ModelArgs
    weights: dict[str, npt.NDArray[Any]]  # the network's state, as plain arrays (torch is not needed to serve)
    preprocessor: Preprocessor
    threshold: float | None
    lineage: Lineage | None = field(default=None, compare=False)
    scaling: TargetScaling | None = None

    @property
    def contract(self) -> FeatureContract:
        """The feature contract the model was trained on."""
        return self.preprocessor.contract

    def with_lineage(self, lineage: Lineage) -> Bundle:
        """The same bundle carrying ``lineage``."""
        return replace(self, lineage=lineage)

    def save(self, directory: Path) -> None:
        """Write the bundle's files into ``directory`` (created if needed)."""
        directory.mkdir(parents=True, exist_ok=True)
        model = {"format_version": FORMAT_VERSION, "args": self.args.to_dict(), **self._answer()}
        model["target"] = self.contract.target.name
        (directory / MODEL_FILE).write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
        save_file({name: np.require(a, requirements="C") for name, a in self.weights.items()}, directory / WEIGHTS_FILE)
        self.preprocessor.save(directory / PREPROCESSING_FILE)
        if self.lineage is not None:
            lineage = json.dumps(self.lineage.model_dump(mode="python"), indent=2)
            (directory / LINEAGE_FILE).write_text(lineage + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        """The bundle in ``directory``; a BundleError says what is missing or wrong."""
        missing = [name for name in IDENTITY_FILES if not (directory / name).is_file()]
        if missing:
            raise BundleError(f"{directory}: not a model bundle, missing {', '.join(missing)}")
        try:
            model = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
            if model.get("format_version") != FORMAT_VERSION:
                raise BundleError(
                    f"{directory / MODEL_FILE}: format version {model.get('format_version')!r}, "
                    f"this code reads {FORMAT_VERSION}"
                )
            args = ModelArgs(**model["args"])
            preprocessor = Preprocessor.load(directory / PREPROCESSING_FILE)
            threshold, scaling, wrong = _answer_of(model, preprocessor.contract.target.task)
            problems = [*args.problems(), *wrong]
            if args.outputs != preprocessor.contract.target.outputs:
                problems.append(f"{args.outputs} outputs for a target of {preprocessor.contract.target.outputs}")
            if problems:
                raise BundleError(f"{directory / MODEL_FILE}: " + "; ".join(problems))
            weights = load_file(directory / WEIGHTS_FILE)
            lineage = read_lineage(directory / LINEAGE_FILE)
            bundle = cls(args, weights, preprocessor, threshold, lineage, scaling)
        except BundleError:
            raise
        except (json.JSONDecodeError, KeyError, TypeError, ValidationError, SafetensorError, OSError) as e:
            raise BundleError(f"{directory}: cannot read the model bundle: {e}") from e
        if args.cardinalities != preprocessor.cardinalities:
            raise BundleError(f"{directory}: the network's categories do not match its preprocessing")
        return bundle

    def digest(self) -> str:
        """A hash of what the model computes (arguments, weights, preprocessing, threshold), not of its lineage."""
        digest = hashlib.sha256()
        model = {"args": self.args.to_dict(), **self._answer()}
        digest.update(json.dumps(model, sort_keys=True).encode())
        for name in sorted(self.weights):
            digest.update(name.encode())
            digest.update(self.weights[name].tobytes())  # C order, as the file holds it
        digest.update(self.preprocessor.model_dump_json().encode())
        return digest.hexdigest()

    def _answer(self) -> dict[str, object]:
        """What the task keeps beside the network: the threshold of a binary model, a regression's scaling."""
        if self.contract.target.task == "binary":
            return {"threshold": self.threshold}
        if self.scaling is not None:
            return {"target_scaling": self.scaling.to_dict()}
        return {}


def _answer_of(model: dict[str, Any], task: str) -> tuple[float | None, TargetScaling | None, list[str]]:
    """The threshold (binary) and the target scaling (regression) that ``model.json`` holds, and what is wrong
    with them."""
    if task == "binary":
        threshold = model["threshold"]
        usable = isinstance(threshold, int | float) and not isinstance(threshold, bool) and math.isfinite(threshold)
        if not usable or not 0 <= threshold <= 1:
            return None, None, [f"threshold must be a number from 0 to 1, not {threshold!r}"]
        return float(threshold), None, []
    if task == "regression":
        given = model.get("target_scaling")
        if not isinstance(given, dict):
            return None, None, [f"a regression model needs its target_scaling, not {given!r}"]
        scaling = TargetScaling(**given)
        return None, scaling, scaling.problems()
    return None, None, []


def files_digest(directory: Path) -> str:
    """SHA-256 of a bundle directory as files: every file's path and contents, in path order.

    Recorded on the registry version at registration; serving checks it before it reads a byte of the bundle.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() or p.is_symlink()):
        if path.is_symlink():
            raise BundleError(f"{path}: a model bundle holds no links")
        content = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                content.update(block)
        digest.update(f"{path.relative_to(directory).as_posix()}\0{content.hexdigest()}\n".encode())
    return digest.hexdigest()


class Predictor:
    """Predictions from a bundle: columns of contract features in, probabilities and labels out.

    Inference runs the folded network (NumPy, exact rewrites of the PyTorch network in eval mode), which
    predicts one row in microseconds; training and checkpoints use :class:`TabularNet` itself.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        misfits = weight_misfits(bundle.args, bundle.weights)
        if misfits:
            raise BundleError(f"the weights do not fit the network's arguments: {'; '.join(misfits)}")
        self.network = FoldedNetwork.from_weights(bundle.args, bundle.weights)
        self.target = bundle.contract.target  # read once: predictions are on the serving hot path

    @classmethod
    def from_directory(cls, directory: Path) -> Predictor:
        """A predictor for the bundle in ``directory``."""
        return cls(Bundle.load(directory))

    @property
    def threshold(self) -> float:
        """The decision threshold chosen on the validation split (a binary model's)."""
        if self.bundle.threshold is None:
            raise BundleError(f"a {self.bundle.contract.target.task} model has no decision threshold")
        return self.bundle.threshold

    def outputs(self, columns: Mapping[str, Column]) -> npt.NDArray[np.float64]:
        """The task's prediction for each row: the positive class's probability (binary, ``[rows]``), each
        class's probability (multiclass, ``[rows, classes]``) or the value (regression, ``[rows]``)."""
        encoded = self.bundle.preprocessor.transform(columns)
        members = self.network.outputs(encoded.categorical, encoded.numeric)
        return combine(self.target, members, self.bundle.scaling)

    def predict_proba(self, columns: Mapping[str, Column]) -> npt.NDArray[np.float64]:
        """Probability of the positive class (binary) or of each class (multiclass) for each row."""
        if self.target.task == "regression":
            raise BundleError("a regression model predicts values, not probabilities")
        return self.outputs(columns)

    def predict(self, columns: Mapping[str, Column]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Probabilities and labels at the bundle's threshold (a binary model's)."""
        proba = self.outputs(columns)
        return proba, proba >= self.threshold

    def answer(self, columns: Mapping[str, Column]) -> Answers:
        """The task's answers for each row: probability and label (binary), the class and each class's
        probability (multiclass), or the value (regression)."""
        return Answers.of(self.target, self.outputs(columns), self.bundle.threshold)

    def predict_classes(self, columns: Mapping[str, Column]) -> tuple[npt.NDArray[np.float64], list[str]]:
        """Each class's probability and the most probable class, for each row (a multiclass model's)."""
        classes = self.bundle.contract.target.classes
        if classes is None:
            raise BundleError(f"a {self.bundle.contract.target.task} model has no classes")
        proba = self.outputs(columns)
        return proba, [classes[i] for i in proba.argmax(axis=1)]


def weight_misfits(args: ModelArgs, weights: Mapping[str, npt.NDArray[Any]]) -> list[str]:
    """What keeps ``weights`` from being the state of the network of ``args``: tensors missing, unexpected or of
    another shape (at most five of each said)."""
    expected = args.weight_shapes()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{name} is {tuple(weights[name].shape)}, not {shape}"
        for name, shape in expected.items()
        if name in weights and tuple(weights[name].shape) != shape
    ]
    return [
        *([f"missing {', '.join(missing[:5])}"] if missing else []),
        *([f"unexpected {', '.join(unexpected[:5])}"] if unexpected else []),
        *wrong[:5],
    ]
