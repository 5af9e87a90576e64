# Sourced by pipelines/run: the same floating-point results on every x86-64 CPU that has AVX2, so that a stage
# reproduces dvc.lock byte for byte on another machine of the same kind. Without it NumPy, OpenBLAS, PyTorch and
# PyTorch's MKL and oneDNN pick AVX-512 kernels where the CPU has them, whose results differ in the last bits
# (vectorised log1p, sums, matrix products). What is already set in the environment is kept.
if [ "$(uname -m)" = x86_64 ]; then
    : "${NPY_DISABLE_CPU_FEATURES=X86_V4 AVX512_ICL AVX512_SPR}"  # NumPy 2.x's AVX-512 targets (pinned NumPy)
    : "${OPENBLAS_CORETYPE=Haswell}"
    : "${ATEN_CPU_CAPABILITY=avx2}"
    : "${MKL_CBWR=AVX2}"
    : "${ONEDNN_MAX_CPU_ISA=AVX2}"
    export NPY_DISABLE_CPU_FEATURES OPENBLAS_CORETYPE ATEN_CPU_CAPABILITY MKL_CBWR ONEDNN_MAX_CPU_ISA
fi
