"""PostgreSQL for the stack: a cluster of its own (``initdb`` once, ``pg_ctl``), a database and role for MLflow, and a
role for the prediction logs with a database per dataset.

PostgreSQL refuses to run as root. Started by root, the stack runs ``initdb`` and ``pg_ctl`` as an unprivileged
system user (``TABLOOP_STACK_POSTGRES_USER``, default ``postgres``, which Debian's package creates; the stack
creates it with ``useradd --system`` if it is missing), which owns the cluster's directory and nothing else of the
stack. Started by anyone else, it runs as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tabloop.errors import ConfigError
from tabloop.layout import load_datasets
from tools.stack.credentials import MLFLOW, PREDICTIONS, SUPERUSER, log_database, postgres_url, write_private
from tools.stack.errors import NotReadyError, StackError
from tools.stack.part import Launched, Part
from tools.stack.processes import PidRecord, log_tail, process_facts, record_of, wait_for
from tools.stack.settings import HOST, inherited_environment

DEBIAN_BIN = Path("/usr/lib/postgresql")  # /usr/lib/postgresql/<major>/bin: not on PATH
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Account:
    """The unprivileged user PostgreSQL runs as when root starts the stack."""

    name: str
    uid: int
    gid: int


def find_postgres_bin(configured: Path | None) -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: the configured one, else PATH's, else Debian's newest."""
    if configured is not None:
        candidates = [configured]
    else:
        on_path = shutil.which("initdb")
        debian = sorted(DEBIAN_BIN.glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
        candidates = ([Path(on_path).resolve().parent] if on_path else []) + debian[::-1]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise StackError(
        "PostgreSQL's initdb and pg_ctl not found (PATH, /usr/lib/postgresql/*/bin): install Debian's postgresql "
        "package (`make stack-up` does, as root) or set TABLOOP_STACK_POSTGRES_BIN to their directory"
    )


def service_account(name: str) -> Account | None:
    """The account PostgreSQL runs as: None (this process's user) unless this process is root; created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        command = ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(
                f"PostgreSQL cannot run as root and the user {name!r} could not be created "
                f"({result.stderr.strip() or 'useradd failed'}); create it or set TABLOOP_STACK_POSTGRES_USER"
            ) from None
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise StackError(f"TABLOOP_STACK_POSTGRES_USER={name} is root, which PostgreSQL refuses to run as")
    return Account(name, entry.pw_uid, entry.pw_gid)


def unreachable(
    path: Path, uid: int, gids: set[int], stat_of: Callable[[Path], os.stat_result] = os.stat
) -> Path | None:
    """The first directory above ``path`` that user ``uid`` (groups ``gids``) may not enter, if any."""
    if uid == 0:
        return None
    for directory in reversed(path.absolute().parents):
        info = stat_of(directory)
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in gids:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


class Postgres(Part):
    key = "postgres"
    name = "PostgreSQL"
    port_setting = "TABLOOP_STACK_POSTGRES_PORT"

    @property
    def timeout_s(self) -> float:
        return self.settings.postgres_timeout_s

    @property
    def data(self) -> Path:
        return self.paths.part(self.key) / "data"

    def ports(self) -> list[tuple[str, int]]:
        return [(self.name, self.settings.postgres_port)]

    def address(self) -> str:
        return f"postgresql://{HOST}:{self.settings.postgres_port}"

    def launch(self) -> Launched:
        binaries = find_postgres_bin(self.settings.postgres_bin)
        account = service_account(self.settings.postgres_user)
        self._prepare(account)
        if not (self.data / "PG_VERSION").is_file():
            self._initdb(binaries, account)
        options = f"-c port={self.settings.postgres_port} -c listen_addresses={HOST} -c unix_socket_directories=''"
        command = [str(binaries / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log), "-o", options]
        try:
            result = self._run([*command, "-w", "-t", str(round(self.timeout_s))], account, self.timeout_s + 10)
        except NotReadyError:
            self._stop_leftover()
            raise
        record = self.adopt()
        if result.returncode != 0 or record is None:
            self._stop_leftover()
            said = (result.stdout + result.stderr).strip().splitlines()
            raise NotReadyError(
                f"PostgreSQL did not start ({said[-1] if said else 'pg_ctl failed'}); last lines of "
                f"{self.log}:\n{log_tail(self.log)}"
            )
        return None, record

    def adopt(self) -> PidRecord | None:
        """The postmaster of this stack's cluster, from the cluster's own ``postmaster.pid``."""
        try:
            pid = int((self.data / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        record = record_of(pid)
        if record is None or str(self.data) not in record.cmdline:
            return None
        return record

    def answers(self) -> bool:
        try:
            with self._engine(SUPERUSER, self.credentials.postgres_superuser_password, "postgres").connect() as db:
                return db.execute(sa.text("SELECT 1")).scalar() == 1
        except sa.exc.DBAPIError:
            return False

    def bootstrap(self) -> None:
        """A role for MLflow with its database, and one for the prediction logs with a database per dataset of
        ``configs/datasets.yaml`` (each ``stack-up`` adds those of datasets added since); passwords from the
        credentials."""
        passwords = {MLFLOW: self.credentials.mlflow_db_password, PREDICTIONS: self.credentials.predictions_db_password}
        databases = {MLFLOW: MLFLOW, **{log_database(name): PREDICTIONS for name in self.datasets()}}
        engine = self._engine(SUPERUSER, self.credentials.postgres_superuser_password, "postgres")
        with engine.connect() as db:
            for name in [*passwords, *databases]:
                if not IDENTIFIER.match(name):  # identifiers and generated passwords are safe to put in SQL
                    raise StackError(f"{name!r} is not a plain PostgreSQL identifier")
            for role, password in passwords.items():
                exists = db.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": role}).first()
                db.execute(sa.text(f"{'ALTER' if exists else 'CREATE'} ROLE {role} LOGIN PASSWORD '{password}'"))
            for database, owner in databases.items():
                if not db.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": database}).first():
                    db.execute(sa.text(f"CREATE DATABASE {database} OWNER {owner} ENCODING 'UTF8'"))
                    db.execute(sa.text(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC"))

    @staticmethod
    def datasets() -> list[str]:
        """The datasets of the repository the stack is started from; none outside one."""
        try:
            return load_datasets().datasets
        except ConfigError:
            return []

    def stop(self, record: PidRecord) -> None:
        self._pg_ctl_stop(record, "fast")

    def _stop_leftover(self) -> None:
        """Stop a postmaster that a failed start left behind, if there is one."""
        record = self.adopt()
        if record is not None:
            self._pg_ctl_stop(record, "immediate")

    def _pg_ctl_stop(self, record: PidRecord, mode: str) -> None:
        """``pg_ctl stop``; if the postmaster is still there after it, SIGQUIT (immediate shutdown)."""
        account = service_account(self.settings.postgres_user)
        binaries = find_postgres_bin(self.settings.postgres_bin)
        timeout = self.settings.stop_timeout_s
        command = [str(binaries / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w", "-t", str(round(timeout))]
        self._run(command, account, timeout + 10)
        if not wait_for(lambda: process_facts(record.pid) is None, 2.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
            wait_for(lambda: process_facts(record.pid) is None, timeout)

    def _prepare(self, account: Account | None) -> None:
        """The cluster's directory, owned by ``account`` and reachable by it."""
        home = self.paths.part(self.key)
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        self.log.touch(exist_ok=True)
        if account is None:
            return
        for path in (home, self.log):
            os.chown(path, account.uid, account.gid)
        blocked = unreachable(home, account.uid, {account.gid, *os.getgrouplist(account.name, account.gid)})
        if blocked is not None:
            raise StackError(
                f"PostgreSQL runs as user {account.name}, who cannot enter {blocked} (mode "
                f"{stat.S_IMODE(blocked.stat().st_mode):o}); put the stack elsewhere with TABLOOP_STACK_DIR"
            )

    def _initdb(self, binaries: Path, account: Account | None) -> None:
        """A new cluster: its superuser's password from the credentials, password logins only."""
        password_file = self.paths.part(self.key) / ".initdb-password"
        write_private(password_file, self.credentials.postgres_superuser_password + "\n")
        if account is not None:
            os.chown(password_file, account.uid, account.gid)
        command = [
            str(binaries / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={password_file}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale",
        ]  # fmt: skip
        try:
            result = self._run(command, account, 120)
        finally:
            password_file.unlink(missing_ok=True)
        with self.log.open("a", encoding="utf-8") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)  # the next start begins again from nothing
            raise NotReadyError(f"initdb failed; last lines of {self.log}:\n{log_tail(self.log)}")

    def _run(
        self, command: Sequence[str], account: Account | None, timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        """``command`` as ``account`` (None: as this process's user), in a session of its own so that the server
        it may start does not belong to this terminal."""
        switch: dict[str, Any] = (
            {} if account is None else {"user": account.uid, "group": account.gid, "extra_groups": []}
        )
        try:
            return subprocess.run(
                list(command),
                capture_output=True,
                text=True,
                check=False,
                cwd=self.paths.part(self.key),
                env=inherited_environment(LANG="C.UTF-8"),
                start_new_session=True,
                timeout=timeout_s,
                **switch,
            )
        except subprocess.TimeoutExpired as e:
            raise NotReadyError(f"{command[0]} did not finish within {timeout_s:g} s") from e

    def _engine(self, role: str, password: str, database: str) -> sa.Engine:
        url = postgres_url(self.settings, role, password, database)
        try:
            return sa.create_engine(
                url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2}
            )
        except (ImportError, sa.exc.NoSuchModuleError) as e:
            raise StackError("psycopg is not installed: install the stack's extra (`make stack-up` does)") from e
