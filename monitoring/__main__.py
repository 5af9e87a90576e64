"""``python -m monitoring``: replay production traffic (``make replay``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from flightdelay.cli import console, entry_point
from flightdelay.config import load_data_config
from monitoring.config import load_monitor_config

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)

CONFIG = Annotated[Path, typer.Option("--config", help="Monitoring configuration file.")]


@app.callback()
def main() -> None:
    """Monitoring: replayed production traffic against the running service."""


@app.command()
def replay(
    config: CONFIG = Path("configs/monitor.yaml"),
    data_config: Annotated[Path, typer.Option(help="Data configuration (the feature contract).")] = Path(
        "configs/data.yaml"
    ),
    url: Annotated[str, typer.Option(envvar="SERVICE_URL", help="The service to send to.")] = "http://127.0.0.1:8000",
    api_key: Annotated[str | None, typer.Option(envvar="SERVICE_API_KEY", help="The service's API key.")] = None,
    max_requests: Annotated[int | None, typer.Option(min=1, help="Stop after this many predictions.")] = None,
    max_seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds.")] = None,
    speedup: Annotated[float | None, typer.Option(min=0.001, help="Virtual seconds per second.")] = None,
    rate: Annotated[float | None, typer.Option(min=0.001, help="Requests per second at most.")] = None,
    restart: Annotated[bool, typer.Option(help="Start over instead of resuming the saved state.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Send the production months to the service in time order, outcomes after landing; resumable."""
    from monitoring.replay import replay as run_replay

    with entry_point("replay"):
        settings = load_monitor_config(config).replay
        overrides = {"max_requests": max_requests, "max_seconds": max_seconds, "speedup": speedup, "rate": rate}
        settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        contract = load_data_config(data_config).contract
        summary = asyncio.run(
            run_replay(settings, contract, url, api_key=api_key, restart=restart, show_progress=progress)
        )
        state = summary.state
        console.print(
            f"replay {state.run}: {summary.sent:,} flights sent in {summary.seconds:.1f} s "
            f"({summary.sent / max(summary.seconds, 1e-9):,.0f} req/s), {summary.rejected:,} rejected, "
            f"{summary.feedback:,} outcomes sent; in all {state.next:,} of {state.flights:,} flights, "
            f"{state.feedback_sent:,} outcomes; virtual time {state.virtual_time}"
        )
        if state.rejected_examples and summary.rejected:
            console.print(f"rejected, e.g.: {state.rejected_examples[-1]}")
        if not summary.finished:
            console.print(f"stopped by {summary.stopped_by}; run it again to resume ({settings.state})")


if __name__ == "__main__":
    app()
