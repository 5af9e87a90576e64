"""The local stack's pure logic: which PID files to trust, which ports are taken, who may enter a directory, what
the settings accept and what the env file says."""

from __future__ import annotations

import os
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from helpers import REPO_ROOT
from tools.stack.credentials import Credentials, connection_settings, render_env
from tools.stack.errors import StackBusyError, StackError
from tools.stack.postgres import unreachable
from tools.stack.processes import (
    LOG_MARK,
    PidRecord,
    ProcessFacts,
    Verdict,
    exclusive,
    judge,
    log_tail,
    mark_log,
    port_is_free,
    read_pid_file,
    record_of,
    taken_ports,
    wait_for,
    write_pid_file,
)
from tools.stack.settings import StackSettings

RECORD = PidRecord(pid=4242, create_time=1000.0, cmdline=("/usr/bin/weed", "mini", "-dir=/x"))


def test_a_pid_file_is_trusted_only_while_its_process_has_the_same_start_and_command_line() -> None:
    assert judge(RECORD, ProcessFacts(1000.2, RECORD.cmdline)) is Verdict.RUNNING
    assert judge(RECORD, None) is Verdict.DEAD
    assert judge(RECORD, ProcessFacts(2000.0, RECORD.cmdline)) is Verdict.FOREIGN  # the PID was reused
    assert judge(RECORD, ProcessFacts(1000.0, ("/usr/bin/sleep", "60"))) is Verdict.FOREIGN
    assert judge(RECORD, ProcessFacts(0.0, ())) is Verdict.FOREIGN  # a process we may not inspect


def test_pid_files_on_disk_are_judged_against_the_live_process(tmp_path: Path) -> None:
    path = tmp_path / "run" / "part.pid"
    assert read_pid_file(path) == (Verdict.NONE, None)
    path.parent.mkdir()
    path.write_text("12345\n")  # a bare PID, as other tools write them: not proof of anything
    assert read_pid_file(path) == (Verdict.UNREADABLE, None)

    own = record_of(os.getpid())
    assert own is not None
    write_pid_file(path, own)
    assert read_pid_file(path) == (Verdict.RUNNING, own)
    write_pid_file(path, own.model_copy(update={"cmdline": ("/usr/sbin/postgres", "-D", "/elsewhere")}))
    assert read_pid_file(path)[0] is Verdict.FOREIGN
    assert list(path.parent.iterdir()) == [path]  # written beside and renamed: no staging file left


def test_a_finished_process_is_dead_even_before_it_is_reaped(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    assert wait_for(lambda: record_of(child.pid) is not None, 5)  # the kernel shows the command line a moment late
    record = record_of(child.pid)
    assert record is not None
    assert child.stdin is not None
    child.stdin.close()  # it ends
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, still a zombie
    write_pid_file(tmp_path / "child.pid", record)
    assert read_pid_file(tmp_path / "child.pid")[0] is Verdict.DEAD
    child.wait()


def test_a_port_with_a_listener_is_taken_and_free_again_once_it_closes() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
        assert taken_ports([("PostgreSQL", port)]) == [("PostgreSQL", port)]
    assert port_is_free(port)
    assert taken_ports([("PostgreSQL", port)]) == []


def test_a_listener_on_every_interface_takes_the_port_on_loopback_too() -> None:
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        assert not port_is_free(listener.getsockname()[1])


def _stat(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 0, 0, 0, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "owner", "group", "blocked"),
    [
        (0o755, 0, 0, None),  # anyone may enter
        (0o711, 0, 0, None),  # enter, not list: enough
        (0o700, 0, 0, "/home/me"),  # root's own
        (0o750, 0, 104, None),  # through the group
        (0o700, 101, 104, None),  # its own
    ],
)
def test_a_directory_the_postgres_user_cannot_enter_is_named(
    mode: int, owner: int, group: int, blocked: str | None
) -> None:
    tree = {Path("/"): _stat(0o755), Path("/home"): _stat(0o755), Path("/home/me"): _stat(mode, owner, group)}
    found = unreachable(Path("/home/me/repo/.stack/postgres"), 101, {104}, lambda p: tree.get(p, _stat(0o755)))
    assert found == (Path(blocked) if blocked else None)
    assert unreachable(Path("/home/me/repo"), 0, {0}, lambda p: tree.get(p, _stat(0o700))) is None  # root


def test_the_settings_refuse_a_port_given_twice_and_a_block_that_does_not_fit() -> None:
    settings = StackSettings(postgres_port=20000, s3_port=21000, mlflow_port=22000)
    ports = {port: owner for owner, port in settings.ports()}
    assert len(ports) == 12  # PostgreSQL, MLflow, and SeaweedFS's five components with a gRPC port each
    assert ports[21002] == "SeaweedFS volume"
    assert ports[31004] == "SeaweedFS admin gRPC"
    with pytest.raises(ValidationError, match="port 21001 is given to both SeaweedFS master and MLflow"):
        StackSettings(s3_port=21000, mlflow_port=21001)
    with pytest.raises(ValidationError, match="less than or equal to 55531"):
        StackSettings(s3_port=60000)


def test_the_env_file_points_everything_at_the_stack_and_reads_back_in_a_shell_and_in_make(tmp_path: Path) -> None:
    settings = StackSettings(postgres_port=20000, s3_port=21000, mlflow_port=22000)
    credentials = Credentials.generate()
    variables = connection_settings(settings, credentials)
    assert variables["TABLOOP_TRACKING_URI"] == "http://127.0.0.1:22000"
    assert variables["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:21000"
    server = f"postgresql+psycopg://predictions:{credentials.predictions_db_password}@127.0.0.1:20000"
    assert variables["TABLOOP_STACK_LOG_SERVER"] == server
    assert credentials.postgres_superuser_password not in render_env(variables)  # the superuser stays in the stack
    stack_dir = tmp_path / "stack"
    env_file = stack_dir / "env"
    stack_dir.mkdir()
    env_file.write_text(render_env(variables))
    shell = subprocess.run(
        ["bash", "-c", f"set -a; . {shlex.quote(str(env_file))}; env"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.defpath},
    )
    assert {f"{name}={value}" for name, value in variables.items()} <= set(shell.stdout.splitlines())

    # `make stack-env` for a shell, and what every target sees with STACK=1: the same values, and the prediction
    # log of the dataset the command works on.
    exports = _make(stack_dir, "-s", "stack-env", "DATASET=credit")
    assert exports.returncode == 0, exports.stderr
    given = {f"export {name}={value}" for name, value in variables.items()}
    assert set(exports.stdout.splitlines()) == given | {
        f"export TABLOOP_SERVE_PREDICTION_LOG_URL={server}/predictions_credit"
    }
    planned = _make(stack_dir, "-n", "push", "STACK=1", "DATASET=flights")
    assert planned.returncode == 0, planned.stderr
    assert "dvc push --remote stack" in planned.stdout
    assert "python -m tools.stack up" in planned.stdout  # the stack is started first if it is not running
    seen = _make(stack_dir, "-s", "--eval=show-env: ; @env", "show-env", "STACK=1", "DATASET=flights")
    assert seen.returncode == 0, seen.stderr
    assert {f"{name}={value}" for name, value in variables.items()} <= set(seen.stdout.splitlines())
    assert f"TABLOOP_SERVE_PREDICTION_LOG_URL={server}/predictions_flights" in seen.stdout.splitlines()


def _make(stack_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``make args`` in the repository with the stack's directory at ``stack_dir``."""
    env = {**os.environ, "TABLOOP_STACK_DIR": str(stack_dir)}
    return subprocess.run(["make", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)


def test_a_value_that_would_need_quoting_never_reaches_the_env_file() -> None:
    for value in ("two words", "it's", "$HOME", "a;b"):
        with pytest.raises(StackError, match="would need quoting in the env file"):
            render_env({"NAME": value})


def test_credentials_are_new_each_time_private_on_disk_and_refused_when_not_ours(tmp_path: Path) -> None:
    first, second = Credentials.generate(), Credentials.generate()
    assert first.s3_secret_key != second.s3_secret_key
    path = tmp_path / "credentials.json"
    assert Credentials.load(path) is None
    first.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credentials.load(path) == first
    path.write_text('{"s3_access_key": "x"}')
    with pytest.raises(StackError, match="not the stack's credentials"):
        Credentials.load(path)


def test_a_second_command_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    busy = f"another `python -m tools.stack` command is running \\(PID {os.getpid()}"
    with exclusive(lock), pytest.raises(StackBusyError, match=busy), exclusive(lock):
        pass
    with exclusive(lock):  # released with the first holder
        pass


def test_a_log_tail_shows_only_what_the_latest_start_wrote(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    assert "no log" in log_tail(log)
    log.write_text("old start\nold failure\n")
    mark_log(log)
    assert "nothing written" in log_tail(log)
    with log.open("a") as file:
        file.write("bind: address already in use\n")
    assert log_tail(log) == "  | bind: address already in use"
    assert log.read_text().count(LOG_MARK) == 1
