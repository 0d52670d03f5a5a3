"""Encrypted, consistent, backend-neutral backups of the repository and its attachments.

A backup is a logical copy: every table of `sante.store.schema.metadata` that the database has, read inside ONE
read-only snapshot transaction (SQLite: one read transaction under WAL; PostgreSQL: REPEATABLE READ READ ONLY),
streamed row by row in primary-key order, then every file under `<data_dir>/attachments/`. Being logical, a
backup taken on SQLite restores into PostgreSQL and vice versa, and onto another machine.

The file:

    preamble (64 bytes, clear):  magic "SANTEBK1" | kdf (1 scrypt, 2 raw key) | log2(N) r p (scrypt) | 3 reserved
                                 | salt (32 random bytes) | key check (16 bytes)
    chunks:                      final flag (1 byte) | length (4 bytes, big-endian) | AES-256-GCM ciphertext + tag

The file key is HKDF-SHA256(master, salt) where master is scrypt(passphrase, salt) or a raw 32-byte key, so
each backup has its own key even when the key file is shared. Chunk i is sealed with nonce = i (96 bits) and
associated data = preamble | i | final flag: a changed byte anywhere, a reordered, dropped or repeated chunk, a
truncation (no final chunk) or trailing data is detected. The key check value tells a wrong passphrase apart
from a damaged file.

The plaintext inside the chunks is one zlib stream of records, kind (1 byte) | length (4 bytes) | payload:

    H  header: format, Sante and schema versions, creation time, source backend, tables (columns, row counts)
    T  a table begins          R  a batch of its rows          t  the table ends: rows, SHA-256 of its R payloads
    A  an attachment begins    D  a piece of its bytes         a  it ends: size, SHA-256
    E  the end

A row batch is flags (1 byte) | JSON length (4 bytes) | JSON array of rows | the rows' binary values, which the
JSON replaces by their length (binary content is not base64'd: it stays compressible). Memory is bounded by one
batch (or one row, for a huge one) whatever the database size.

A restore goes into an empty database (or, with force, one it wipes), all in one transaction: the schema is
created at the backup's schema version, rows are inserted in batches (one binary COPY per table on PostgreSQL),
secondary indexes are built once at the end, counts and hashes are verified, sequences are set, later migrations
are applied, and only then is it committed. A wrong key, a
damaged or truncated file leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import orjson
from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    inspect,
)

from sante.store.repository import _engine, now_instant
from sante.store.schema import MIGRATIONS, metadata, migrate, schema_version

FORMAT = 1
MAGIC = b"SANTEBK1"
PREAMBLE_SIZE = 64
CHUNK = 1 << 20  # plaintext (compressed) bytes sealed per chunk
TAG = 16
MAX_SEALED = (1 << 24) + TAG  # the largest chunk a reader accepts (writers seal CHUNK)
KDF_SCRYPT, KDF_RAW = 1, 2
SCRYPT_LOG2N, SCRYPT_R, SCRYPT_P = 17, 8, 1  # 128 MiB, about a second: a passphrase is expensive to guess
ZLIB_LEVEL = 6
FILE_PIECE = 1 << 20  # attachment bytes per D record
BATCH_ROWS = 2000  # rows per batch for narrow tables
BATCH_ROWS_BINARY = 250  # rows per batch for tables with binary columns (resource JSON)
INFO = b"sante-backup/1 aes-256-gcm"

ProgressFn = Callable[[int, int], None]  # (rows done, rows in all)


class BackupError(Exception):
    """A backup or restore that cannot go on: the message is one line for the operator."""


# -------------------------------------------------------------------------------------------------------------
# keys


@dataclass(frozen=True, slots=True)
class Secret:
    """What a backup is encrypted with: a passphrase (stretched with scrypt) or a raw 32-byte key."""

    passphrase: bytes | None = None
    key: bytes | None = None

    @classmethod
    def from_passphrase(cls, passphrase: str | bytes) -> Secret:
        raw = passphrase.encode() if isinstance(passphrase, str) else passphrase
        if not raw:
            raise BackupError("the backup passphrase is empty")
        return cls(passphrase=raw)

    @classmethod
    def from_key(cls, key: bytes) -> Secret:
        if len(key) != 32:
            raise BackupError(f"a backup key must be 32 bytes, got {len(key)}")
        return cls(key=key)

    @classmethod
    def from_passphrase_file(cls, path: Path) -> Secret:
        data = _read_secret_file(path)
        for end in (b"\r\n", b"\n"):
            if data.endswith(end):
                data = data[: -len(end)]
                break
        return cls.from_passphrase(data)

    @classmethod
    def from_key_file(cls, path: Path) -> Secret:
        """32 raw bytes, or 64 hexadecimal digits (a trailing newline allowed)."""
        data = _read_secret_file(path)
        if len(data) == 32:
            return cls.from_key(data)
        text = data.strip()
        try:
            key = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            key = b""
        if len(key) != 32:
            raise BackupError(f"{path}: a key file holds 32 raw bytes or 64 hexadecimal digits")
        return cls.from_key(key)

    @classmethod
    def resolve(cls, passphrase_file: str | None = None, key_file: str | None = None,
                environ: dict[str, str] | None = None) -> Secret:
        """From the options, else SANTE_BACKUP_KEY_FILE, else SANTE_BACKUP_PASSPHRASE."""
        env = os.environ if environ is None else environ
        if passphrase_file and key_file:
            raise BackupError("give either --passphrase-file or --key-file, not both")
        if key_file:
            return cls.from_key_file(Path(key_file))
        if passphrase_file:
            return cls.from_passphrase_file(Path(passphrase_file))
        if env.get("SANTE_BACKUP_KEY_FILE"):
            return cls.from_key_file(Path(env["SANTE_BACKUP_KEY_FILE"]))
        if env.get("SANTE_BACKUP_PASSPHRASE"):
            return cls.from_passphrase(env["SANTE_BACKUP_PASSPHRASE"])
        raise BackupError("no backup key: set SANTE_BACKUP_PASSPHRASE or pass --passphrase-file or --key-file")


def _read_secret_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except OSError as e:
        raise BackupError(f"{path}: cannot read ({e.strerror})") from None


def _derive(secret: Secret, kdf: int, log2n: int, r: int, p: int, salt: bytes) -> tuple[bytes, bytes]:
    """(file key, key check value)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    if kdf == KDF_SCRYPT:
        if secret.passphrase is None:
            raise BackupError("this backup was encrypted with a passphrase: give --passphrase-file or "
                              "SANTE_BACKUP_PASSPHRASE, not a key file")
        if not (10 <= log2n <= 24 and 1 <= r <= 32 and 1 <= p <= 4 and 128 * r << log2n <= 1 << 30):
            raise BackupError("not a usable Sante backup: its key-derivation parameters are out of range")
        master = Scrypt(salt=salt, length=32, n=1 << log2n, r=r, p=p).derive(secret.passphrase)
    elif kdf == KDF_RAW:
        if secret.key is None:
            raise BackupError("this backup was encrypted with a key file: give --key-file or SANTE_BACKUP_KEY_FILE, "
                              "not a passphrase")
        master = secret.key
    else:
        raise BackupError(f"not a usable Sante backup: unknown key derivation {kdf}")
    out = HKDF(algorithm=hashes.SHA256(), length=48, salt=salt, info=INFO).derive(master)
    return out[:32], out[32:]


# -------------------------------------------------------------------------------------------------------------
# the sealed, compressed stream


class _SealedWriter:
    """Plaintext in; zlib-compressed, chunked AES-256-GCM out, to an open binary file.

    Compression and encryption run in a thread of their own (zlib and file writes release the GIL), overlapping
    the database reads; a bounded queue keeps memory at a few MiB."""

    def __init__(self, out: BinaryIO, secret: Secret, kdf_log2n: int) -> None:
        import queue
        import threading

        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt = os.urandom(32)
        if secret.key is not None:
            kdf, log2n, r, p = KDF_RAW, 0, 0, 0
        else:
            kdf, log2n, r, p = KDF_SCRYPT, kdf_log2n, SCRYPT_R, SCRYPT_P
        key, check = _derive(secret, kdf, log2n, r, p, salt)
        self.preamble = MAGIC + bytes([kdf, log2n, r, p, 0, 0, 0]) + b"\0" + salt + check
        assert len(self.preamble) == PREAMBLE_SIZE
        self.out = out
        self.aead = AESGCM(key)
        self.zip = zlib.compressobj(ZLIB_LEVEL)
        self.buf = bytearray()  # compressed, not yet sealed (worker thread)
        self.pending = bytearray()  # plaintext, not yet handed over (caller's thread)
        self.index = 0
        self.plain_bytes = 0
        self.error: BaseException | None = None
        out.write(self.preamble)
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self.thread = threading.Thread(target=self._work, name="sante-backup-seal", daemon=True)
        self.thread.start()

    def write(self, data: bytes) -> None:
        self.plain_bytes += len(data)
        self.pending += data
        if len(self.pending) >= CHUNK:
            self._hand_over()

    def _hand_over(self) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(bytes(self.pending))
        self.pending.clear()

    def close(self) -> None:
        """Seal the rest and the final chunk; raises what went wrong in the worker, if anything."""
        if self.pending:
            self._hand_over()
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        if self.thread.is_alive():
            self.error = self.error or BackupError("aborted")
            self.queue.put(None)
            self.thread.join()

    def _work(self) -> None:
        while True:
            data = self.queue.get()
            if self.error is not None:  # failed or aborted: drain so that the caller never blocks
                if data is None:
                    return
                continue
            try:
                if data is None:
                    self.buf += self.zip.flush()
                    self._seal_full()
                    self._seal(bytes(self.buf), final=True)
                    return
                self.buf += self.zip.compress(data)
                self._seal_full()
            except BaseException as e:
                self.error = e
                if data is None:
                    return

    def _seal_full(self) -> None:
        while len(self.buf) > CHUNK:  # keep at least one byte back: the last chunk is sealed as final
            self._seal(bytes(self.buf[:CHUNK]), final=False)
            del self.buf[:CHUNK]

    def _seal(self, data: bytes, final: bool) -> None:
        flag = 1 if final else 0
        sealed = self.aead.encrypt(self.index.to_bytes(12, "big"), data, _aad(self.preamble, self.index, flag))
        self.out.write(bytes([flag]) + len(sealed).to_bytes(4, "big") + sealed)
        self.index += 1


def _aad(preamble: bytes, index: int, flag: int) -> bytes:
    return preamble + index.to_bytes(8, "big") + bytes([flag])


class _SealedReader:
    """The plaintext of a backup file, read exactly, checked chunk by chunk."""

    def __init__(self, f: BinaryIO, secret: Secret, name: str) -> None:
        self.f, self.name = f, name
        pre = f.read(PREAMBLE_SIZE)
        if len(pre) < PREAMBLE_SIZE or not pre.startswith(MAGIC[:7]):
            raise BackupError(f"{name}: not a Sante backup")
        if pre[:8] != MAGIC:
            raise BackupError(f"{name}: a Sante backup of an unknown format ({pre[7:8]!r}); use a newer Sante")
        kdf, log2n, r, p = pre[8], pre[9], pre[10], pre[11]
        salt, check = pre[16:48], pre[48:64]
        key, expected = _derive(secret, kdf, log2n, r, p, salt)
        import hmac

        if not hmac.compare_digest(expected, check):
            raise BackupError(f"{name}: wrong passphrase or key (or the file's header is damaged)")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.preamble = pre
        self.aead = AESGCM(key)
        self.unzip = zlib.decompressobj()
        self.index = 0
        self.buf = bytearray()
        self.pos = 0
        self.pieces = self._plain_pieces()

    def _chunks(self) -> Iterator[bytes]:
        from cryptography.exceptions import InvalidTag

        while True:
            head = self.f.read(5)
            if not head:
                raise BackupError(f"{self.name}: truncated (it ends after {self.index} chunks, before its last)")
            if len(head) < 5 or head[0] > 1:
                raise BackupError(f"{self.name}: damaged or truncated at chunk {self.index}")
            flag, size = head[0], int.from_bytes(head[1:5], "big")
            if size > MAX_SEALED or size < TAG:
                raise BackupError(f"{self.name}: damaged at chunk {self.index} (impossible length)")
            sealed = self.f.read(size)
            if len(sealed) < size:
                raise BackupError(f"{self.name}: truncated inside chunk {self.index}")
            try:
                data = self.aead.decrypt(self.index.to_bytes(12, "big"), sealed,
                                         _aad(self.preamble, self.index, flag))
            except InvalidTag:
                raise BackupError(f"{self.name}: damaged or tampered with at chunk {self.index} "
                                  f"(bytes {self.f.tell() - size - 5}-{self.f.tell()})") from None
            self.index += 1
            yield data
            if flag:
                if self.f.read(1):
                    raise BackupError(f"{self.name}: unexpected data after its last chunk")
                return

    def _plain_pieces(self) -> Iterator[bytes]:
        limit = 4 * CHUNK  # at most this much decompressed at a time: a small chunk may inflate a lot
        for data in self._chunks():
            piece = self.unzip.decompress(data, limit)
            while piece:
                yield piece
                piece = self.unzip.decompress(self.unzip.unconsumed_tail, limit)
        tail = self.unzip.flush()
        if tail:
            yield tail
        if not self.unzip.eof or self.unzip.unused_data:
            raise BackupError(f"{self.name}: damaged (its compressed stream is incomplete)")

    def read(self, n: int) -> bytes:
        """Exactly n bytes; b"" at the clean end of the stream, an error if it ends in the middle."""
        while len(self.buf) - self.pos < n:
            piece = next(self.pieces, None)
            if piece is None:
                if len(self.buf) == self.pos:
                    return b""
                raise BackupError(f"{self.name}: damaged (a record is cut short)")
            if self.pos:
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += piece
        out = bytes(self.buf[self.pos: self.pos + n])
        self.pos += n
        return out

    def at_end(self) -> bool:
        """Whether the stream is over (reading on to check that the last chunk really was the last)."""
        if len(self.buf) > self.pos:
            return False
        for piece in self.pieces:
            if piece:
                self.buf, self.pos = bytearray(piece), 0
                return False
        return True


_REC = struct.Struct(">cI")


def _record(kind: bytes, payload: bytes) -> bytes:
    return _REC.pack(kind, len(payload)) + payload


# -------------------------------------------------------------------------------------------------------------
# rows


def _kind(column: Any) -> str:
    t = column.type
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, LargeBinary):
        return "bytes"
    if isinstance(t, Float):
        return "float"
    if isinstance(t, Integer):
        return "int"
    if isinstance(t, String):
        return "str"
    raise BackupError(f"column {column.table.name}.{column.name} has a type backups do not know ({t!r})")


@dataclass(slots=True)
class TableSpec:
    name: str
    columns: list[tuple[str, str]]  # (name, kind)
    rows: int = 0

    def idx(self, kind: str) -> list[int]:
        return [i for i, (_, k) in enumerate(self.columns) if k == kind]


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _encode_rows(rows: list[Any], spec_bools: list[int], spec_bytes: list[int], spec_floats: list[int],
                 sqlite: bool) -> bytes:
    """One R payload. Binary values go after the JSON, which holds their lengths; non-finite floats (JSON has
    none) become strings and flag bit 0."""
    flags = 0
    blobs: list[bytes] = []
    fix_bools = spec_bools if sqlite else []  # SQLite hands back 0/1
    if fix_bools or spec_bytes:
        out = []
        for r in rows:
            r = list(r)
            for i in fix_bools:
                if r[i] is not None:
                    r[i] = bool(r[i])
            for i in spec_bytes:
                v = r[i]
                if v is not None:
                    v = bytes(v)
                    blobs.append(v)
                    r[i] = len(v)
            out.append(r)
        rows = out
    if spec_floats:
        for n, r in enumerate(rows):
            for i in spec_floats:
                v = r[i]
                if v is not None and not math.isfinite(v):
                    r = list(r)
                    r[i] = "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
                    rows[n] = r
                    flags |= 1
    body = orjson.dumps(rows)
    return bytes([flags]) + len(body).to_bytes(4, "big") + body + b"".join(blobs)


def _decode_rows(payload: bytes, spec_bytes: list[int], spec_floats: list[int]) -> list[list[Any]]:
    flags = payload[0]
    end = 5 + int.from_bytes(payload[1:5], "big")
    rows = orjson.loads(payload[5:end])
    if spec_bytes:
        pos = end
        for r in rows:
            for i in spec_bytes:
                n = r[i]
                if n is not None:
                    r[i] = payload[pos: pos + n]
                    pos += n
        if pos != len(payload):
            raise ValueError("binary values do not add up")
    elif end != len(payload):
        raise ValueError("unexpected bytes after the rows")
    if flags & 1:
        for r in rows:
            for i in spec_floats:
                if type(r[i]) is str:
                    r[i] = _NONFINITE[r[i]]
    return rows


# -------------------------------------------------------------------------------------------------------------
# backup


@dataclass(slots=True)
class BackupSummary:
    path: Path
    backend: str
    schema_version: int
    tables: dict[str, int]  # rows per table
    resources: int  # rows of `resources` (current resources, deletions included)
    versions: int  # rows of `resource_history`
    attachments: int
    attachment_bytes: int
    plain_bytes: int  # records, before compression
    file_bytes: int
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        p = url.removeprefix("sqlite:///").split("?", 1)[0]
        return Path(p) if p and p != ":memory:" else None
    return None


def _open_engine(url: str, *, create: bool) -> Engine:
    path = _sqlite_path(url)
    if path is not None and not create and not path.exists():
        raise BackupError(f"{path}: no such database")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return _engine(url)


def _snapshot_begin(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        # Must be the transaction's first statement: every later read sees the same snapshot.
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    # SQLite: the engine's BEGIN plus the first read below fix the snapshot (WAL: writers go on meanwhile).


def _live_tables(conn: Connection) -> list[TableSpec]:
    """The tables of metadata present in the database, with the columns present (an older schema may lack some)."""
    insp = inspect(conn)
    names = set(insp.get_table_names())
    if schema_version.name not in names:
        raise BackupError("not a Sante database (it has no schema_version table)")
    out = []
    for table in metadata.sorted_tables:
        if table.name not in names:
            continue
        live = {c["name"] for c in insp.get_columns(table.name)}
        out.append(TableSpec(str(table.name), [(str(c.name), _kind(c)) for c in table.columns if c.name in live]))
    return out


def _order_by(table: Table, spec: TableSpec, dialect: str) -> str:
    pk = [c.name for c in table.primary_key.columns]
    if pk:
        return " ORDER BY " + ", ".join(pk)
    return " ORDER BY rowid" if dialect == "sqlite" else ""  # index tables: storage order


def _stream_rows(conn: Connection, sql: str, fetch: int) -> Iterator[list[Any]]:
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        cur = raw.cursor(name=f"sante_backup_{os.getpid()}")  # server-side: memory holds one batch
        cur.itersize = fetch
    else:
        cur = raw.cursor()
    try:
        cur.execute(sql)
        while rows := cur.fetchmany(fetch):
            yield rows
    finally:
        cur.close()


def backup(url: str, out: Path, secret: Secret, *, attachments_dir: Path | None = None,
           progress: ProgressFn | None = None, kdf_log2n: int = SCRYPT_LOG2N) -> BackupSummary:
    """Write an encrypted backup of the database at `url` (and of attachments_dir, if it exists) to `out`.

    The file appears under its name only once complete and on disk (written beside it, fsynced, renamed)."""
    import time

    started = time.monotonic()
    out = Path(out)
    if out.is_dir():
        raise BackupError(f"{out}: is a folder; name the backup file")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent}: no such folder")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    engine = _open_engine(url, create=False)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            w = _SealedWriter(f, secret, kdf_log2n)
            try:
                with engine.connect() as conn, conn.begin():
                    dialect, version, tables = _write_snapshot(conn, w, attachments_dir, progress)
                # The snapshot is released before the files are copied: attachments are written before the rows
                # that refer to them, so every file the snapshot refers to is there now.
                files = file_bytes = 0
                if attachments_dir is not None and attachments_dir.is_dir():
                    for rel, path in _attachment_files(attachments_dir):
                        files += 1
                        file_bytes += _write_attachment(w, rel, path)
                w.write(_record(b"E", orjson.dumps({"tables": tables, "attachments": files,
                                                    "attachment_bytes": file_bytes})))
                w.close()
            except BaseException:
                w.abort()
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        engine.dispose()
    return BackupSummary(out, dialect, version, tables, tables.get("resources", 0),
                         tables.get("resource_history", 0), files, file_bytes, w.plain_bytes, out.stat().st_size,
                         time.monotonic() - started)


def _write_snapshot(conn: Connection, w: _SealedWriter, attachments_dir: Path | None, progress: ProgressFn | None
                    ) -> tuple[str, int, dict[str, int]]:
    """The header and every table, from one snapshot: (backend, schema version, rows per table)."""
    from sante import __version__

    _snapshot_begin(conn)
    dialect = conn.dialect.name
    specs = _live_tables(conn)
    version = conn.exec_driver_sql("SELECT max(version) FROM schema_version").scalar() or 0
    if version > len(MIGRATIONS):
        raise BackupError(f"the database is at schema version {version}, newer than this Sante's "
                          f"({len(MIGRATIONS)}): back it up with a newer Sante")
    for spec in specs:
        spec.rows = int(conn.exec_driver_sql(f"SELECT count(*) FROM {spec.name}").scalar_one())
    total = sum(s.rows for s in specs)
    header = {
        "format": FORMAT, "sante": __version__, "created": now_instant(), "backend": dialect,
        "schema_version": version,
        "tables": [{"name": s.name, "columns": s.columns, "rows": s.rows} for s in specs],
        "attachments": bool(attachments_dir and attachments_dir.is_dir()),
    }
    w.write(_record(b"H", orjson.dumps(header)))
    tables: dict[str, int] = {}
    done = 0
    if progress:
        progress(0, total)
    for spec in specs:
        table = metadata.tables[spec.name]
        cols = ", ".join(c for c, _ in spec.columns)
        sql = f"SELECT {cols} FROM {spec.name}{_order_by(table, spec, dialect)}"
        b_bool, b_bytes, b_float = spec.idx("bool"), spec.idx("bytes"), spec.idx("float")
        fetch = BATCH_ROWS_BINARY if b_bytes else BATCH_ROWS
        digest = hashlib.sha256()
        n = 0
        w.write(_record(b"T", orjson.dumps({"name": spec.name})))
        for rows in _stream_rows(conn, sql, fetch):
            payload = _encode_rows(rows, b_bool, b_bytes, b_float, dialect == "sqlite")
            digest.update(payload)
            w.write(_record(b"R", payload))
            n += len(rows)
            done += len(rows)
            if progress:
                progress(done, total)
        if n != spec.rows:  # the snapshot is broken if this ever happens
            raise BackupError(f"{spec.name}: counted {spec.rows} rows but read {n}: "
                              "the database gave no consistent snapshot")
        w.write(_record(b"t", orjson.dumps({"rows": n, "sha256": digest.hexdigest()})))
        tables[spec.name] = n
    return dialect, version, tables


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _attachment_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of each regular file under root, in name order; links are not followed."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                yield p.relative_to(root).as_posix(), p


def _write_attachment(w: _SealedWriter, rel: str, path: Path) -> int:
    digest = hashlib.sha256()
    size = 0
    w.write(_record(b"A", orjson.dumps({"path": rel})))
    with open(path, "rb") as f:
        while piece := f.read(FILE_PIECE):
            digest.update(piece)
            size += len(piece)
            w.write(_record(b"D", piece))
    w.write(_record(b"a", orjson.dumps({"size": size, "sha256": digest.hexdigest()})))
    return size


# -------------------------------------------------------------------------------------------------------------
# reading a backup back


@dataclass(slots=True)
class BackupHeader:
    format: int
    sante: str
    created: str
    backend: str
    schema_version: int
    tables: list[TableSpec]
    attachments: bool

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


@dataclass(slots=True)
class Rows:
    table: TableSpec
    rows: list[list[Any]]


@dataclass(slots=True)
class FileStart:
    path: str


@dataclass(slots=True)
class FileData:
    data: bytes


@dataclass(slots=True)
class FileEnd:
    size: int


@dataclass(slots=True)
class End:
    tables: dict[str, int] = field(default_factory=dict)
    attachments: int = 0
    attachment_bytes: int = 0


def _safe_relpath(rel: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or "\\" in rel or "\0" in rel or any(part in ("", ".", "..") for part in p.parts):
        raise BackupError(f"the backup names an attachment outside the attachments folder: {rel!r}")
    return p


class BackupReader:
    """A backup's header, then its content as events (Rows, FileStart, FileData, FileEnd, End), every record
    checked: structure, row counts, table hashes, file sizes and hashes. Use as a context manager."""

    def __init__(self, path: Path, secret: Secret) -> None:
        self.path = Path(path)
        try:
            self.f = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            raise BackupError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise BackupError(f"{self.path}: is a folder, not a backup file") from None
        try:
            self.plain = _SealedReader(self.f, secret, str(self.path))
            kind, payload = self._next()
            if kind != b"H":
                self._broken("it does not begin with a header")
            h = orjson.loads(payload)
            if h.get("format") != FORMAT:
                raise BackupError(f"{self.path}: backup format {h.get('format')} is not one this Sante reads")
            self.header = BackupHeader(
                h["format"], h["sante"], h["created"], h["backend"], int(h["schema_version"]),
                [TableSpec(t["name"], [(c, k) for c, k in t["columns"]], int(t["rows"])) for t in h["tables"]],
                bool(h["attachments"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            self.close()
            raise BackupError(f"{self.path}: damaged header ({e})") from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> BackupReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.f.close()

    def _broken(self, why: str) -> None:
        raise BackupError(f"{self.path}: damaged ({why})")

    def _next(self) -> tuple[bytes, bytes]:
        head = self.plain.read(5)
        if not head:
            self._broken("it ends before its last record")
        kind, size = _REC.unpack(head)
        payload = self.plain.read(size)
        if len(payload) < size:
            self._broken("a record is cut short")
        return kind, payload

    def events(self) -> Iterator[Rows | FileStart | FileData | FileEnd | End]:
        try:
            yield from self._events()
        except (KeyError, TypeError, ValueError, IndexError, struct.error) as e:
            raise BackupError(f"{self.path}: damaged ({type(e).__name__}: {e})") from None

    def _events(self) -> Iterator[Rows | FileStart | FileData | FileEnd | End]:
        tables_seen: dict[str, int] = {}
        for spec in self.header.tables:
            kind, payload = self._next()
            if kind != b"T" or orjson.loads(payload)["name"] != spec.name:
                self._broken(f"table {spec.name} is missing or out of place")
            b_bytes, b_float = spec.idx("bytes"), spec.idx("float")
            digest = hashlib.sha256()
            n = 0
            while True:
                kind, payload = self._next()
                if kind == b"t":
                    break
                if kind != b"R":
                    self._broken(f"unexpected record {kind!r} in table {spec.name}")
                digest.update(payload)
                rows = _decode_rows(payload, b_bytes, b_float)
                if rows and set(map(len, rows)) != {len(spec.columns)}:
                    self._broken(f"a row of {spec.name} has the wrong number of columns")
                n += len(rows)
                yield Rows(spec, rows)
            end = orjson.loads(payload)
            if end["rows"] != n or n != spec.rows:
                self._broken(f"table {spec.name} holds {n} rows; its header says {spec.rows}")
            if end["sha256"] != digest.hexdigest():
                self._broken(f"table {spec.name} does not match its SHA-256")
            tables_seen[spec.name] = n
        files = file_bytes = 0
        while True:
            kind, payload = self._next()
            if kind == b"E":
                break
            if kind != b"A" or not self.header.attachments:
                self._broken(f"unexpected record {kind!r} after the tables")
            rel = orjson.loads(payload)["path"]
            _safe_relpath(rel)
            yield FileStart(rel)
            digest = hashlib.sha256()
            size = 0
            while True:
                kind, payload = self._next()
                if kind == b"a":
                    break
                if kind != b"D":
                    self._broken(f"unexpected record {kind!r} in attachment {rel}")
                digest.update(payload)
                size += len(payload)
                yield FileData(payload)
            end = orjson.loads(payload)
            if end["size"] != size or end["sha256"] != digest.hexdigest():
                self._broken(f"attachment {rel} does not match its size or SHA-256")
            files += 1
            file_bytes += size
            yield FileEnd(size)
        trailer = orjson.loads(payload)
        if trailer["tables"] != tables_seen or trailer["attachments"] != files \
                or trailer["attachment_bytes"] != file_bytes:
            self._broken("its contents do not match its closing record")
        if not self.plain.at_end():
            self._broken("records after the closing record")
        yield End(tables_seen, files, file_bytes)


def verify(path: Path, secret: Secret, progress: ProgressFn | None = None) -> tuple[BackupHeader, End]:
    """Read a whole backup and check everything in it, without touching any database."""
    with BackupReader(path, secret) as reader:
        done, total = 0, reader.header.rows
        for ev in reader.events():
            if isinstance(ev, Rows):
                done += len(ev.rows)
                if progress:
                    progress(done, total)
            elif isinstance(ev, End):
                return reader.header, ev
    raise AssertionError("unreachable: events() ends with End")


# -------------------------------------------------------------------------------------------------------------
# restore


@dataclass(slots=True)
class RestoreSummary:
    header: BackupHeader
    tables: dict[str, int]
    resources: int
    versions: int
    attachments: int
    attachment_bytes: int
    schema_version: int  # after the migrations this Sante added
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def _data_tables_in(conn: Connection) -> list[str]:
    names = set(inspect(conn).get_table_names())
    return [t.name for t in metadata.sorted_tables if t.name in names]


def _holds_data(conn: Connection, existing: list[str]) -> str | None:
    """A description of what the database holds, or None when it is empty (its schema aside)."""
    if "resources" in existing:
        n = conn.exec_driver_sql("SELECT count(*) FROM resources").scalar_one()
        if n:
            return f"{n} resources"
    for name in existing:
        if name != schema_version.name and conn.exec_driver_sql(f"SELECT 1 FROM {name} LIMIT 1").first():
            return f"rows in {name}"
    return None


class _Inserter:
    """Inserts into one table: on PostgreSQL one binary COPY for the whole table, on SQLite batched executemany.
    `finish` ends the table (the COPY); the caller calls it before anything else is done on the connection."""

    def __init__(self, conn: Connection, spec: TableSpec) -> None:
        self.conn, self.spec = conn, spec
        self.raw = conn.connection.driver_connection
        self.cols = ", ".join(c for c, _ in spec.columns)
        self.pg = conn.dialect.name == "postgresql"
        self.copy_cm: Any = None
        self.copy: Any = None

    def insert(self, rows: list[list[Any]]) -> None:
        if not self.pg:
            marks = ", ".join("?" * len(self.spec.columns))
            self.raw.cursor().executemany(f"INSERT INTO {self.spec.name} ({self.cols}) VALUES ({marks})", rows)
            return
        if self.copy is None:
            oids = dict(self.conn.exec_driver_sql(
                "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped", (self.spec.name,)).all())
            self.cur = self.raw.cursor()
            self.copy_cm = self.cur.copy(f"COPY {self.spec.name} ({self.cols}) FROM STDIN (FORMAT BINARY)")
            self.copy = self.copy_cm.__enter__()
            self.copy.set_types([oids[c] for c, _ in self.spec.columns])
        write = self.copy.write_row
        for r in rows:
            write(r)

    def finish(self, error: BaseException | None = None) -> None:
        """End the table; with an error, abort the COPY (CopyFail) so that the connection can roll back."""
        if self.copy is not None:
            cm, self.copy, self.copy_cm = self.copy_cm, None, None
            try:
                cm.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)
            except Exception:
                if error is None:
                    raise
            finally:
                self.cur.close()


def _reset_sequences(conn: Connection, names: list[str]) -> None:
    """PostgreSQL: move each serial column's sequence past the restored values."""
    for table in (metadata.tables[n] for n in names):
        for col in table.columns:
            if not isinstance(col.type, Integer):
                continue
            seq = conn.exec_driver_sql("SELECT pg_get_serial_sequence(%s, %s)", (table.name, col.name)).scalar()
            if seq:
                top = conn.exec_driver_sql(f"SELECT max({col.name}) FROM {table.name}").scalar()
                conn.exec_driver_sql("SELECT setval(%s, %s, %s)", (seq, top or 1, top is not None))


def restore(path: Path, url: str, secret: Secret, *, attachments_dir: Path | None = None, force: bool = False,
            progress: ProgressFn | None = None) -> RestoreSummary:
    """Restore a backup into the (empty, unless force) database at `url` and into attachments_dir.

    All or nothing: the database is written in one transaction committed only after every record was read and
    checked; attachments are written beside their folder and moved into place after the commit."""
    import time

    started = time.monotonic()
    with BackupReader(path, secret) as reader:  # a wrong key or a foreign file fails here, before any write
        header = reader.header
        if header.schema_version > len(MIGRATIONS):
            raise BackupError(f"the backup is at schema version {header.schema_version}, newer than this Sante's "
                              f"({len(MIGRATIONS)}): restore it with a newer Sante")
        for spec in header.tables:
            table = metadata.tables.get(spec.name)
            if table is None:
                raise BackupError(f"the backup holds a table this Sante does not know: {spec.name}")
            unknown = [c for c, _ in spec.columns if c not in table.columns]
            if unknown:
                raise BackupError(f"the backup's table {spec.name} has columns this Sante does not know: {unknown}")
        if attachments_dir is not None and attachments_dir.is_dir() and any(attachments_dir.iterdir()) \
                and not force:
            raise BackupError(f"{attachments_dir} is not empty; restore into an empty data folder or pass --force "
                              "to replace it")
        db_file = _sqlite_path(url)
        created_file = db_file is not None and not db_file.exists()
        staging = None  # the backup's attachments (none: an empty folder) replace the folder after the commit
        if attachments_dir is not None and (header.attachments or attachments_dir.exists()):
            staging = attachments_dir.with_name(f".{attachments_dir.name}.restoring-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        engine = _open_engine(url, create=True)
        committed = False
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(sante_write=True)  # SQLite: BEGIN IMMEDIATE, the write lock up front
                with conn.begin():
                    summary = _restore_into(conn, reader, header, staging, force, progress)
                committed = True
            _move_attachments(staging, attachments_dir)
            staging = None
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            engine.dispose()
            if created_file and not committed and db_file is not None:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        Path(str(db_file) + suffix).unlink()
            raise
        try:  # fresh planner statistics for the new data (outside the transaction: ANALYZE may not run in one)
            with engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("PRAGMA analysis_limit=2000")  # sampled, as Repository.optimize does
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        finally:
            engine.dispose()
    summary.seconds = time.monotonic() - started
    return summary


def _restore_into(conn: Connection, reader: BackupReader, header: BackupHeader, staging: Path | None, force: bool,
                  progress: ProgressFn | None) -> RestoreSummary:
    existing = _data_tables_in(conn)
    if not force:
        held = _holds_data(conn, existing)
        if held:
            raise BackupError(f"the target database is not empty ({held}); restore into an empty database or "
                              "pass --force to replace it")
    # A clean slate at the backup's schema version: its rows fit, later migrations then run as on any upgrade.
    _drop_schema(conn, existing)
    schema_version.create(conn)
    for step in MIGRATIONS[: header.schema_version]:
        step(conn)
    inserters = {spec.name: _Inserter(conn, spec) for spec in header.tables}
    indexes = _drop_secondary_indexes(conn, list(inserters))  # built once at the end: faster than row by row
    total, done = header.rows, 0
    if progress:
        progress(0, total)
    out = None
    end: End | None = None
    current: _Inserter | None = None
    try:
        for ev in reader.events():
            if isinstance(ev, Rows):
                if current is not None and current.spec.name != ev.table.name:
                    current.finish()
                current = inserters[ev.table.name]
                current.insert(ev.rows)
                done += len(ev.rows)
                if progress:
                    progress(done, total)
            elif isinstance(ev, FileStart):
                if staging is not None:  # None: the caller restores the database only
                    target = staging.joinpath(*_safe_relpath(ev.path).parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    out = open(target, "xb")  # noqa: SIM115 (closed at FileEnd, or below)
            elif isinstance(ev, FileData):
                if out is not None:
                    out.write(ev.data)
            elif isinstance(ev, FileEnd) and out is not None:
                out.flush()
                os.fsync(out.fileno())
                out.close()
                out = None
            elif isinstance(ev, End):
                end = ev
            if current is not None and not isinstance(ev, Rows):
                current.finish()
                current = None
    except BaseException as e:
        if current is not None:
            current.finish(e)
        raise
    finally:
        if out is not None:
            out.close()
    assert end is not None
    for ddl in indexes:
        conn.exec_driver_sql(ddl)
    for spec in header.tables:
        n = conn.exec_driver_sql(f"SELECT count(*) FROM {spec.name}").scalar_one()
        if n != spec.rows:
            raise BackupError(f"restored {n} rows into {spec.name} where the backup holds {spec.rows}")
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn, [spec.name for spec in header.tables])
    version = migrate(conn, now_instant())
    return RestoreSummary(header, end.tables, end.tables.get("resources", 0), end.tables.get("resource_history", 0),
                          end.attachments, end.attachment_bytes, version)


def _drop_secondary_indexes(conn: Connection, tables: list[str]) -> list[str]:
    """Drop the indexes of these tables that no constraint needs; returns the statements that re-create them."""
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(tables))
        found = conn.exec_driver_sql(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                     f"AND tbl_name IN ({marks})", tuple(tables)).all()
    else:
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")  # for the index builds at the end
        found = conn.exec_driver_sql(
            "SELECT quote_ident(i.relname), pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)", (tables,)).all()
    for name, _ in found:
        conn.exec_driver_sql(f"DROP INDEX {name}")
    return [ddl for _, ddl in found]


def _drop_schema(conn: Connection, existing: list[str]) -> None:
    """Drop Sante's tables. On SQLite, every table of the file: migrations also make tables outside metadata
    (the FTS5 index of idx_text), which must go too or re-running the migrations would fail."""
    if conn.dialect.name == "sqlite":
        found = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                                     "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").all()
        virtual = [n for n, sql in found if (sql or "").upper().startswith("CREATE VIRTUAL TABLE")]
        for name in [*virtual, *(n for n, _ in found if n not in virtual)]:  # a virtual table drops its shadows
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
    else:
        metadata.drop_all(conn, tables=[metadata.tables[n] for n in existing])


def _move_attachments(staging: Path | None, target: Path | None) -> None:
    if staging is None or target is None:
        return
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["BackupError", "BackupHeader", "BackupReader", "BackupSummary", "RestoreSummary", "Secret", "backup",
           "restore", "verify"]
