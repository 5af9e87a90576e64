"""``python -m monitoring``: replay production traffic (``make replay``), report and judge drift (``make monitor``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from monitoring.settings import ServiceClient
from tabloop.commands.boundary import DatasetOption, console, entry_point
from tabloop.config import load_data_config, load_registry_config
from tabloop.config.monitor import load_monitor_config
from tabloop.settings import from_environment

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)

SERVICE_URL = Annotated[
    str | None, typer.Option(help="The service; default: SERVICE_URL from the environment, else http://127.0.0.1:8000.")
]
SERVICE_API_KEY = Annotated[
    str | None, typer.Option(help="The service's API key; default: SERVICE_API_KEY from the environment.")
]
CONFIG = Annotated[Path | None, typer.Option("--config", help="Monitoring configuration file; default: the dataset's.")]
DATA_CONFIG = Annotated[Path | None, typer.Option(help="Data configuration (contract, split); default: the dataset's.")]
REGISTRY_CONFIG = Annotated[
    Path | None, typer.Option(help="Registry configuration (the model); default: the dataset's.")
]


@app.callback()
def main() -> None:
    """Monitoring: replayed production traffic, Evidently reports and dashboard, the drift gate."""


@app.command()
def replay(
    dataset: DatasetOption = None,
    config: CONFIG = None,
    data_config: DATA_CONFIG = None,
    url: SERVICE_URL = None,
    api_key: SERVICE_API_KEY = None,
    max_requests: Annotated[int | None, typer.Option(min=1, help="Stop after this many predictions.")] = None,
    max_seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds.")] = None,
    until: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Stop once the rows of this local day (YYYY-MM-DD) are sent."),
    ] = None,
    speedup: Annotated[float | None, typer.Option(min=0.001, help="Virtual seconds per second.")] = None,
    rate: Annotated[float | None, typer.Option(min=0.001, help="Requests per second at most.")] = None,
    restart: Annotated[bool, typer.Option(help="Start over instead of resuming the saved state.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Send the test split to the service in time order, outcomes when they are known; resumable."""
    from monitoring.replay import replay as run_replay
    from monitoring.replay import run_loop

    with entry_point("replay") as process:
        service = service_client(url, api_key)
        where = process.layout(dataset)
        settings = load_monitor_config(config or where.monitor_config, where).replay
        overrides = {
            "max_requests": max_requests,
            "max_seconds": max_seconds,
            "speedup": speedup,
            "rate": rate,
            "until": until.date() if until else None,
        }
        settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        data = load_data_config(data_config or where.data_config)
        summary = run_loop(
            run_replay(
                settings,
                data.contract,
                service.url,
                time_zone=data.entity.time_zone,
                api_key=service.key(),
                restart=restart,
                show_progress=progress,
            )
        )
        for line in summary.describe(settings.state):
            console.print(line)


@app.command()
def monitor(
    dataset: DatasetOption = None,
    config: CONFIG = None,
    registry_config: REGISTRY_CONFIG = None,
) -> None:
    """Report every window of the prediction log into the workspace; judge the latest (exit 0 healthy, 3 alarm,
    4 not enough data)."""
    from monitoring.gate import describe
    from monitoring.monitor import run_monitor

    with entry_point("monitor") as settings:
        where = settings.layout(dataset)
        loaded = load_monitor_config(config or where.monitor_config, where, settings.prediction_log_url)
        task = load_data_config(where.data_config).contract.target.task
        registry = load_registry_config(registry_config or where.registry_config)
        result = run_monitor(loaded, settings, registry, task)
        for entry in result.windows:
            console.print(f"  {entry.window}: {entry.rows:,} predictions, {entry.labelled:,} outcomes: {entry.status}")
        console.print(describe(result.verdict))
        out = loaded.reports.out_dir
        report = f"; report of the latest window: {out / 'latest.html'}" if result.verdict.window else ""
        console.print(f"verdict: {out / 'verdict.json'}{report}")
    raise typer.Exit(code=result.verdict.exit_code)


@app.command()
def retrain(
    dataset: DatasetOption = None,
    config: CONFIG = None,
    features_metrics: Annotated[
        Path | None,
        typer.Option(help="The features stage's metrics (how far the data reaches); default: the dataset's."),
    ] = None,
    url: SERVICE_URL = None,
    api_key: SERVICE_API_KEY = None,
    dry_run: Annotated[bool, typer.Option(help="Show the moved split and stop.")] = False,
) -> None:
    """Run the pipeline again on a split moved to the outcomes in the prediction log; the gate decides whether the
    new model becomes the champion, and the running service loads it (exit 0 promoted, 3 champion kept, 4 nothing
    new to train on)."""
    from monitoring.retrain import retrain as run_retrain

    with entry_point("retrain") as settings:
        service = service_client(url, api_key)
        where = settings.layout(dataset)
        result = run_retrain(
            settings,
            where,
            load_monitor_config(config or where.monitor_config, where, settings.prediction_log_url),
            features_metrics=features_metrics,
            url=service.url,
            api_key=service.key(),
            dry_run=dry_run,
            report=console.print,
        )
    raise typer.Exit(code=result.exit_code)


@app.command()
def dashboard(
    dataset: DatasetOption = None,
    config: CONFIG = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8001,
) -> None:
    """Serve the monitoring workspace with the Evidently UI on 127.0.0.1 (after checking it can be read)."""
    from monitoring.dashboard import serve
    from monitoring.workspace import MonitoringWorkspace

    with entry_point("dashboard") as settings:
        where = settings.layout(dataset)
        reports = load_monitor_config(config or where.monitor_config, where, settings.prediction_log_url).reports
        if not reports.workspace.is_dir():
            console.print(f"no monitoring workspace at {reports.workspace} yet: run `make monitor` first")
            raise typer.Exit(code=1)
        MonitoringWorkspace(reports.workspace, reports.project)  # removes unreadable snapshots, which break the UI
        console.print(f"dashboard on http://127.0.0.1:{port} (Ctrl-C stops)")
        serve(reports.workspace, reports.project, port)


def service_client(url: str | None, api_key: str | None) -> ServiceClient:
    """The service from the environment (a ConfigError naming a bad variable), each option given replacing it."""
    service = from_environment(ServiceClient)
    if url is not None:
        service = service.model_copy(update={"url": url})
    if api_key is not None:
        service = service.model_copy(update={"api_key": SecretStr(api_key)})
    return service


if __name__ == "__main__":
    app()
