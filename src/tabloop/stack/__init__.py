"""A production-like stack on this machine: PostgreSQL, an S3-compatible store (SeaweedFS) and an MLflow tracking
server on PostgreSQL and S3, each bound to 127.0.0.1, with data, logs, PID files and generated credentials under
one git-ignored directory (``.stack/``).

:mod:`tabloop.stack.control` starts, stops and reports it (``tabloop stack up|down|status``, ``make stack-up``);
each part is one module (:mod:`~tabloop.stack.postgres`, :mod:`~tabloop.stack.objectstore`,
:mod:`~tabloop.stack.tracking`); :mod:`~tabloop.stack.processes` proves which processes are the stack's own.
"""
