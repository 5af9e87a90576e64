"""The stages' numerics are pinned to AVX2 kernels on x86-64, whatever the CPU offers beyond."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from helpers import REPO_ROOT

PROBE = """
import json, os, numpy, torch
features = numpy._core._multiarray_umath.__cpu_features__
print(json.dumps({
    "torch": torch.backends.cpu.get_cpu_capability(),
    "numpy_avx512": [k for k in ("X86_V4", "AVX512_ICL", "AVX512_SPR") if features.get(k)],
    "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")},
}))
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the pinned kernels are x86-64's")
def test_a_stage_runs_numpy_and_torch_without_avx512_kernels() -> None:
    done = subprocess.run(
        ["sh", "-c", '. pipelines/numerics.sh && exec "$0" -c "$1"', sys.executable, PROBE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr  # NumPy refuses to start if a disabled target is not one of its own
    found = json.loads(done.stdout)
    assert found["torch"] in ("AVX2", "DEFAULT")
    assert found["numpy_avx512"] == []
    assert found["env"] == {"OPENBLAS_CORETYPE": "Haswell", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
