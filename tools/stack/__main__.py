"""``python -m tools.stack up|down|status`` (what ``make stack-up``, ``stack-down`` and ``stack-status`` run)."""

from tools.stack.cli import app

app(prog_name="python -m tools.stack")
