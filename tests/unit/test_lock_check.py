"""CI's check of the committed dvc.lock: data stages byte for byte, trained stages within a tolerance of the
committed metrics where another CPU rounds them otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tools.lock_check import compare


def lock(train_md5: str = "aaa", features_md5: str = "fff", lr: float = 0.001) -> str:
    stages = {
        "features@loans": {
            "cmd": "pipelines/run features",
            "outs": [{"path": "data/loans/features", "md5": features_md5}],
        },
        "train@loans": {
            "cmd": "pipelines/run train",
            "params": {"configs/loans/train.yaml": {"optimizer": {"lr": lr}}},
            "outs": [{"path": "models/loans/bundle", "md5": train_md5}],
        },
    }
    return yaml.safe_dump({"schema": "2.0", "stages": stages})


def workspace(root: Path, valid: float, test: float) -> Path:
    (root / "reports" / "loans" / "train").mkdir(parents=True)
    (root / "reports" / "loans" / "evaluation").mkdir(parents=True)
    (root / "reports" / "loans" / "train" / "metrics.json").write_text(json.dumps({"valid_roc_auc": valid}))
    evaluation = {"primary": {"name": "roc_auc"}, "test": {"pytorch": {"roc_auc": test}, "logistic": {"roc_auc": 0.8}}}
    (root / "reports" / "loans" / "evaluation" / "metrics.json").write_text(json.dumps(evaluation))
    return root


RECORDED = {"loans": {"valid_roc_auc": 0.86, "test_roc_auc.pytorch": 0.8355, "test_roc_auc.logistic": 0.8}}


def test_an_identical_lock_needs_exactly_the_recorded_metrics(tmp_path: Path) -> None:
    assert compare(lock(), lock(), RECORDED, workspace(tmp_path, 0.86, 0.8355)) == []
    stale = compare(lock(), lock(), RECORDED, workspace(tmp_path / "b", 0.86, 0.8356))
    assert stale == ["loans: test_roc_auc.pytorch 0.8356 against the recorded 0.8355"]


def test_trained_bits_may_differ_with_metrics_within_tolerance(tmp_path: Path) -> None:
    other_cpu = lock(train_md5="bbb")
    assert compare(lock(), other_cpu, RECORDED, workspace(tmp_path, 0.861, 0.8320)) == []
    far = compare(lock(), other_cpu, RECORDED, workspace(tmp_path / "b", 0.86, 0.82))
    assert far == ["loans: test_roc_auc.pytorch 0.82 against the committed (tolerance 0.005) 0.8355"]


def test_data_stages_and_parameters_must_reproduce_exactly(tmp_path: Path) -> None:
    root = workspace(tmp_path, 0.86, 0.8355)
    assert compare(lock(), lock(features_md5="ggg"), RECORDED, root) == [
        "features@loans: a data stage's lock entry differs (data work must reproduce byte for byte)"
    ]
    assert compare(lock(), lock(train_md5="bbb", lr=0.002), RECORDED, root) == [
        "train@loans: its command or parameters differ from the committed ones"
    ]
    assert compare(lock(), lock(), {}, root) == [
        "loans: no metrics recorded in .ci/metrics.json (python -m tools.lock_check --write)"
    ]
