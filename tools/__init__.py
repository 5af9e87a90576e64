"""Developer tools of this repository, beside the product: the local production-like stack and the benchmarks.
They import the product; the product never imports them, and neither the wheel nor a registered model carries them.
"""
