"""The audit spool: where a server's audit events become safe in microseconds, before they join the chain.

Writing every request's AuditEvent straight into the database made the request wait for the database's write
lock, which on SQLite is one lock for the whole file, shared with the clinical writes of every worker. Instead,
each process appends its events to a journal file of its own in `<data dir>/audit-spool/` (one `write()` per
group of events; the response is sent once it has returned), and a background drainer moves the journals into
the hash-chained `audit_log` in one transaction every second, recording in the same transaction how far
it has read each file (`audit_spool`), so every spooled event is chained exactly once.

What this guarantees:
- an event whose `write()` returned survives a kill -9 of the server (the bytes are the kernel's); the next
  drain, by any process of the same data directory (a worker, `sante audit verify`, `sante backup`, the next
  start) chains it; an operating-system crash can lose the events of the last drain interval, as a database
  commit with `synchronous=NORMAL` would;
- each line carries a MAC (keyed BLAKE2b) under the audit key: a line altered while spooled is not chained as if genuine but
  replaced by an `audit-integrity` event (outcome 8) naming the file and offset;
- reading the trail (search, read, verify, export) drains first, so a reader sees every event acknowledged
  before its read began on this machine.

A writer holds a shared `flock` on its own file for as long as it writes there; a file nobody holds any more
(its process ended, or rotated to a new file past `MAX_FILE_BYTES`) is deleted once fully drained. A trailing
line without its newline was never acknowledged (the writer died inside `write()`) and is dropped with the file.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import socket
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from sante.auth.audit import BODY_PREFIX, Rendered
from sante.store.repository import now_instant

if TYPE_CHECKING:
    from sante.auth.audit import AuditLog, Event

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 16 << 20  # a writer starts a new file past this size, so drained files can be deleted
DRAIN_INTERVAL = 1.0  # seconds between background drains
MAX_DRAIN_BYTES = 8 << 20  # bytes read per file per drain (a backlog is worked off over several drains)


class AuditSpool:
    """Per-process journal files for audit events, drained into an `AuditLog`."""

    def __init__(self, directory: Path, log_: AuditLog) -> None:
        self.directory = Path(directory)
        self.log = log_
        self._key = log_.key
        self._fd: int | None = None
        self._pid: int | None = None
        self._size = 0
        self._write_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._known: dict[str, int] = {}  # file -> read_to, as of this process's last drain
        self.failing_since: float | None = None  # background drains failing since (monotonic), for logging
        self.logged_at = 0.0
        self.tried_at = 0.0

    # -- writing (the request path) --------------------------------------------------------------------------

    def _line(self, event: Event, recorded: str) -> bytes:
        """`<mac> <header>\t<body>\n`: the header a JSON array of the searched columns, the body the AuditEvent
        JSON without id (JSON has no raw tab or newline), the mac a keyed BLAKE2b of both under the audit key."""
        r = Rendered.of(event, recorded)
        payload = orjson.dumps([r.recorded, r.subtype, r.action, r.outcome, r.username, r.patient]) + b"\t" + r.body
        return _mac(self._key, payload) + b" " + payload + b"\n"

    def _open(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.log"
        fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)  # "still being written": the drainer leaves the file in place
        self._fd, self._pid, self._size = fd, os.getpid(), 0
        _DRAINER.register(self)
        return fd

    def write(self, events: list[Event]) -> None:
        """Make events durable against a process crash: one append to this process's journal."""
        if not events:
            return
        recorded = now_instant()
        data = b"".join(self._line(e, recorded) for e in events)
        with self._write_lock:
            fd = self._fd
            if fd is None or self._pid != os.getpid():  # first write, or a forked child: a file of its own
                fd = self._open()
            elif self._size > MAX_FILE_BYTES:
                os.close(fd)  # releases the shared lock: the drainer deletes it once read to the end
                fd = self._open()
            written = 0
            while written < len(data):  # a regular file takes it whole; loop in case of a short write
                written += os.write(fd, data[written:])
            self._size += written

    def close(self) -> None:
        with self._write_lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    # -- draining ----------------------------------------------------------------------------------------------

    def _read(self, path: Path, offset: int) -> tuple[list[Rendered], int, list[str], bool]:
        """Complete lines of a file from offset: (events, new offset, integrity problems, whether the read stopped
        at the size limit rather than at the end of the file)."""
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(MAX_DRAIN_BYTES)
        full = len(data) == MAX_DRAIN_BYTES
        end = data.rfind(b"\n")
        if end < 0:
            return [], offset, [], full
        events: list[Rendered] = []
        problems: list[str] = []
        pos = offset
        key = self._key
        for line in data[: end + 1].split(b"\n")[:-1]:
            mac, _, payload = line.partition(b" ")
            try:
                if not hmac.compare_digest(mac, _mac(key, payload)):
                    raise ValueError("its MAC does not match (altered)")
                header, _, body = payload.partition(b"\t")
                recorded, subtype, action, outcome, username, patient = orjson.loads(header)
                if not body.startswith(BODY_PREFIX):
                    raise ValueError("its body is not an AuditEvent")
                events.append(Rendered(recorded, subtype, action, outcome, username, patient, body))
            except (ValueError, TypeError) as e:
                problems.append(f"spool file {path.name} at byte {pos}: {e}")
            pos += len(line) + 1
        return events, pos, problems, full

    def drain(self, block: bool = True) -> int:
        """Chain every complete spooled line of this directory's files; returns how many events were chained.
        With block=False, returns 0 at once when another drain (any process) is under way."""
        if not self.directory.is_dir():
            return 0
        if not self._drain_lock.acquire(blocking=block):
            return 0
        try:
            lock_fd = os.open(self.directory / "drain.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
                except BlockingIOError:
                    return 0
                return self._drain_locked()
            finally:
                os.close(lock_fd)  # releases the flock
        finally:
            self._drain_lock.release()

    def _drain_locked(self) -> int:
        total = 0
        while True:
            files = sorted(p for p in self.directory.glob("*.log") if p.is_file())
            if all(self._known.get(p.name) == _size(p) for p in files) and len(files) == len(self._known):
                return total  # nothing new since this process last drained: no database round trip
            offsets = self.log.spool_offsets()
            batch: list[Rendered] = []
            problems: list[str] = []
            moved: dict[str, int] = {}
            more = False
            for path in files:
                start = offsets.get(path.name, 0)
                events, end, bad, full = self._read(path, start)
                more = more or full
                if end != start:
                    moved[path.name] = end
                    batch.extend(events)
                    problems.extend(bad)
            for problem in problems:
                log.error("audit spool: %s", problem)
                recorded = now_instant()
                batch.append(Rendered(recorded, "audit-integrity", "E", "8", None, None,
                                      orjson.dumps(_integrity_event(recorded, problem))))
            if moved:
                batch.sort(key=lambda s: s.recorded)  # chain order follows time across the workers' files
                self.log.append_spooled(batch, moved)
                total += len(batch)
                offsets.update(moved)
            self._remove_finished(files, offsets)
            self._known = {p.name: offsets.get(p.name, 0) for p in files if p.exists()}
            if not more:
                return total  # every file was read to its end (as it was when read)

    def _remove_finished(self, files: list[Path], offsets: dict[str, int]) -> None:
        """Delete files that nobody writes any more and that are read to their last complete line."""
        gone: list[str] = []
        for path in files:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                size = os.fstat(fd).st_size
                done = offsets.get(path.name, 0)
                if done >= size:
                    path.unlink()
                    gone.append(path.name)
                else:
                    with open(path, "rb") as f:
                        f.seek(done)
                        if b"\n" not in f.read():  # only a line cut short by its writer's death: never acknowledged
                            path.unlink()
                            gone.append(path.name)
            finally:
                os.close(fd)
        present = {p.name for p in files}
        stale = [n for n in offsets if n not in present]
        if gone or stale:
            self.log.forget_spool_files(gone + stale)


def _mac(key: bytes, payload: bytes) -> bytes:
    """A line's MAC: keyed BLAKE2b (128 bits), hex."""
    return hashlib.blake2b(payload, key=key[:64], digest_size=16).hexdigest().encode()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _integrity_event(recorded: str, problem: str) -> dict:
    return {"resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110113",
                     "display": "Security Alert"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "audit-integrity"}],
            "action": "E", "recorded": recorded, "outcome": "8", "outcomeDesc": problem,
            "agent": [{"requestor": False, "who": {"display": "Sante"}}],
            "source": {"observer": {"display": "Sante"},
                       "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                                 "code": "4"}]}}


class _Drainer:
    """One background thread per process draining every spool that has been written to."""

    def __init__(self) -> None:
        self._spools: weakref.WeakSet[AuditSpool] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def register(self, spool: AuditSpool) -> None:
        with self._lock:
            self._spools.add(spool)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._stop = threading.Event()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, args=(self._stop,), name="sante-audit-drain",
                                                daemon=True)
                self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(DRAIN_INTERVAL):
            self.drain_all(block=False)

    def drain_all(self, block: bool, quiet: bool = False) -> None:
        now = time.monotonic()
        for spool in list(self._spools):
            if not spool.directory.is_dir() or getattr(spool.log.engine, "sante_closed", False):
                self._spools.discard(spool)  # its files stay: the next process of that data dir chains them
                continue
            if not block and spool.failing_since is not None and now - spool.failing_since > 300 \
                    and now - spool.tried_at < 60:
                continue  # failing for five minutes: try once a minute
            spool.tried_at = now
            try:
                spool.drain(block=block)
                spool.failing_since = None
            except Exception:  # the next round retries; the events stay safe in their files meanwhile
                now = time.monotonic()
                if quiet:
                    continue
                if spool.failing_since is None or now - spool.logged_at >= 60:  # once a minute, not every round
                    log.exception("audit spool: draining %s failed (retrying)", spool.directory)
                    spool.logged_at = now
                spool.failing_since = spool.failing_since or now

    def shutdown(self) -> None:
        """At exit: close this process's files and chain what they hold."""
        self._stop.set()
        for spool in list(self._spools):
            spool.close()
        with contextlib.suppress(Exception):
            self.drain_all(block=True, quiet=True)  # a database already gone: the next start drains the files


_DRAINER = _Drainer()
atexit.register(_DRAINER.shutdown)

__all__ = ["MAX_FILE_BYTES", "AuditSpool"]
