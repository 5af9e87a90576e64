"""A version registered by the release before the runtime package keeps loading after the upgrade.

Such a version carries the whole ``tabloop`` package of its day (``code_paths``) and a pyfunc file that imports
``tabloop.model.bundle``, a module this release no longer has. It is registered here by that release's own code,
taken from the repository's history, and then loaded the two ways this release loads models: by ``mlflow.pyfunc``
in a process of its own (what ``mlflow models serve`` does) and by the service's predictor from the bundle.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest

from helpers import REPO_ROOT
from tabloop.features.fitting import frame_columns
from tabloop.runtime.bundle import BUNDLE_ARTIFACT, Predictor

# The file whose removal moved the pyfunc model into tabloop/runtime/: the commit before that one is the last
# release whose registered models ship the whole package.
MOVED_AWAY = "src/tabloop/pyfunc_model.py"

REGISTER_OLD = """
import sys, mlflow, polars as pl, tabloop
from pathlib import Path
from tabloop.model.bundle import Bundle, files_digest
from tabloop.registry import log_pyfunc_model
mlflow.set_tracking_uri(sys.argv[1])
bundle_dir = Path(sys.argv[2])
contract, held_out = Bundle.load(bundle_dir).contract, pl.read_parquet(sys.argv[3])
with mlflow.start_run():
    logged = log_pyfunc_model(bundle_dir, contract, held_out, files_sha256=files_digest(bundle_dir))
print(tabloop.__file__)
print(logged.uri)
"""

PREDICT = """
import json, sys, mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
served = model.predict(pd.read_parquet(sys.argv[2]))
import tabloop
print(json.dumps({"package": tabloop.__file__, "proba": served["probability"].tolist()}))
"""


def previous_release(tmp_path: Path) -> Path:
    """The ``src`` directory of the release before the runtime package, from git."""
    found = subprocess.run(
        ["git", "log", "-n1", "--diff-filter=D", "--format=%H", "--", MOVED_AWAY],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0 or not found.stdout.strip():
        pytest.skip(f"no git history here to take the previous release from ({MOVED_AWAY} is not in it)")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", f"{found.stdout.strip()}^", "src/tabloop"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp_path / "previous", filter="data")
    return tmp_path / "previous" / "src"


def python(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """What ``script`` printed, run by this environment's Python in a process of its own (in ``cwd``, where MLflow
    puts a local store's artifacts)."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_a_version_registered_before_the_runtime_package_still_loads(
    trained: dict[str, Path], stage_outputs: dict[str, Path], tmp_path: Path
) -> None:
    old_src = previous_release(tmp_path)
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    rows = pl.read_parquet(stage_outputs["features"] / "test.parquet").head(20)
    rows.write_parquet(tmp_path / "rows.parquet")
    old_code = {"PYTHONPATH": str(old_src), "PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true"}
    registered = python(
        REGISTER_OLD, tracking, str(trained["bundle"]), str(tmp_path / "rows.parquet"), cwd=tmp_path, env=old_code
    )
    package, uri = registered.splitlines()[-2:]
    assert Path(package).is_relative_to(old_src)  # registered by the previous release's code

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking)
    try:
        model_dir = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "model")))
    finally:
        mlflow.set_tracking_uri(previous)
    shipped = {p.relative_to(model_dir / "code").as_posix() for p in (model_dir / "code").rglob("*.py")}
    assert "tabloop/model/bundle.py" in shipped  # the whole package of its day
    assert "tabloop/runtime/bundle.py" not in shipped

    predictor = Predictor.from_directory(model_dir / "artifacts" / BUNDLE_ARTIFACT)  # the service's way
    expected, _ = predictor.predict(frame_columns(rows, predictor.bundle.contract))

    loaded = python(
        PREDICT, str(model_dir), str(tmp_path / "rows.parquet"), cwd=tmp_path
    )  # mlflow's way, in a process of its own
    answer = json.loads(loaded.splitlines()[-1])
    assert Path(answer["package"]).is_relative_to(model_dir / "code")  # it runs the code it shipped
    assert np.allclose(answer["proba"], expected, atol=1e-7)
