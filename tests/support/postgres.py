"""Start a real, throw-away PostgreSQL server (Debian's binaries) on a temporary directory and loopback port."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    """A PostgreSQL cluster in a temporary directory; `url` connects to its `sante` database."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="sante-pg-"))
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres system user
            user = "postgres"
            pw = pwd.getpwnam(user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as_user = ["runuser", "-u", user, "--"]
        self.url = f"postgresql://sante@127.0.0.1:{self.port}/sante"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> TempPostgres:
        data = self.dir / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "sante", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=on -c max_connections=100"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w",
                  "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                subprocess.run([*self._as_user, str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p",
                                str(self.port), "-U", "sante", "sante"], check=True, capture_output=True)
                return self
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start: {(self.dir / 'log').read_text()[-2000:]}")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
