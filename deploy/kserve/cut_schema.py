"""Cut KServe's InferenceService CRD (2 MB) down to the schema that inferenceservice.yaml is validated against.

    python deploy/kserve/cut_schema.py serving.kserve.io_inferenceservices.yaml v0.20.0 <commit> \
        > deploy/kserve/inferenceservice.schema.yaml

Kept from the v1beta1 version's openAPIV3Schema, unchanged: apiVersion, kind, metadata, and spec.predictor with
what a custom predictor uses (its containers, volumes and pod settings, replicas and autoscaling). Dropped: status,
spec.transformer, spec.explainer, spec.canary, and the predictor's model-server forms (model, the per-framework
fields, workerSpec). tests/unit/test_deploy_manifests.py adds what the API server's strict field validation
(kubectl's default) does: unknown fields are errors.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

SOURCE = "config/crd/full/serving.kserve.io_inferenceservices.yaml"
MODEL_SERVER_FORMS = (
    "model", "workerSpec", "huggingface", "lightgbm", "onnx", "paddle", "pmml", "pytorch", "sklearn", "tensorflow",
    "triton", "xgboost",
)  # fmt: skip


def cut(crd: dict[str, Any]) -> dict[str, Any]:
    """The part of the CRD's v1beta1 schema that a custom predictor's InferenceService needs."""
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = version["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    predictor = dict(spec["properties"]["predictor"])
    predictor["properties"] = {
        name: value for name, value in predictor["properties"].items() if name not in MODEL_SERVER_FORMS
    }
    return {
        "type": schema["type"],
        "properties": {
            **{name: schema["properties"][name] for name in ("apiVersion", "kind", "metadata")},
            "spec": {"type": spec["type"], "required": spec["required"], "properties": {"predictor": predictor}},
        },
    }


def main(crd_path: str, version: str, commit: str) -> None:
    crd = yaml.load(Path(crd_path).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    schema = cut(crd)
    text = yaml.dump(schema, Dumper=yaml.CSafeDumper, sort_keys=True, width=120)
    assert yaml.load(text, Loader=yaml.CSafeLoader) == schema
    header = (
        f"# The InferenceService schema of KServe {version}, cut down. From the GitHub repository kserve/kserve,\n"
        f"# {SOURCE} at commit {commit} (tag {version}):\n"
        "# the v1beta1 openAPIV3Schema less what inferenceservice.yaml cannot use.\n"
        "# Made by deploy/kserve/cut_schema.py (its docstring says what was kept); do not edit by hand.\n"
    )
    sys.stdout.write(header + text)


if __name__ == "__main__":
    main(*sys.argv[1:])
