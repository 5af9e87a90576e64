"""A production-like stack on this machine: PostgreSQL, an S3-compatible store (SeaweedFS) and an MLflow tracking
server on PostgreSQL and S3, each bound to 127.0.0.1, with data, logs, PID files and generated credentials under
one git-ignored directory (``.stack/``).

:mod:`tools.stack.control` starts, stops and reports it (``make stack-up``, ``python -m tools.stack up|down|status``);
each part is one module (:mod:`~tools.stack.postgres`, :mod:`~tools.stack.objectstore`,
:mod:`~tools.stack.tracking`); :mod:`~tools.stack.processes` proves which processes are the stack's own.
"""
