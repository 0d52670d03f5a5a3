"""Backups: encrypted, consistent, restorable on either backend from either backend, all-or-nothing on restore."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Boolean, Float, Integer, LargeBinary, String, inspect

from sante.cli import main
from sante.store import backup as bk
from sante.store import open_repository
from sante.store.backup import BackupError, BackupReader, Secret, backup, restore, verify
from sante.store.schema import metadata
from sante.store.search import parse_search, run_search
from tests.conftest import SHARED, _fresh_postgres_url

SYNTHEA = SHARED / "data" / "synthea-r4"
FAST = 10  # scrypt log2(N) for tests: the format stores it, restore reads it back
PASS = Secret.from_passphrase("correct horse battery staple")
SEARCHES = [
    ("Patient", [("gender", "female")]),
    ("Patient", [("name", "a")]),
    ("Observation", [("code", "http://loinc.org|8302-2")]),
    ("Observation", [("value-quantity", "gt100")]),
    ("Condition", [("_text", "disorder")]),
    ("Encounter", [("date", "ge2015-01-01")]),
    ("Observation", [("subject:Patient.gender", "male"), ("_count", "50")]),
]


def _url(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / name / 'sante.db'}"
    return _fresh_postgres_url(request.getfixturevalue("postgres_server"))


def _synthetic_value(column: Any, n: int) -> Any:
    t = column.type
    if isinstance(t, Boolean):
        return True
    if isinstance(t, LargeBinary):
        return bytes(range(256)) * 3
    if isinstance(t, Float):
        return [math.inf, -math.inf, 1.5e300][n % 3]
    if isinstance(t, Integer):
        return 7 + n
    if isinstance(t, String):
        text = f"Đỗ Thị Hà ü € {n}"
        return text[: t.length] if t.length else text
    raise AssertionError(f"no synthetic value for {t!r}")


def _populate(url: str) -> None:
    """Three Synthea patients, then updates and deletes (several history versions), and one synthetic row in each
    table the data left empty (users, audit, ...): every table and column type goes through the backup."""
    from sante.store.loader import load_paths

    repo = open_repository(url)
    try:
        files = sorted(SYNTHEA.glob("*.json.gz"))[:3]
        summary = load_paths(repo, files, workers=1)
        assert summary.resources > 500 and not summary.failures
        with repo.reader() as tx:
            patients = run_search(tx, parse_search("Patient", [])).matches
            obs = run_search(tx, parse_search("Observation", [("_count", "3")])).matches
        for n, p in enumerate(patients):
            body = p.resource
            body["name"][0]["family"] = f"Nguyễn-{n}"
            repo.update(body, p.id)
            body["active"] = False
            repo.update(body, p.id)
        for o in obs:
            repo.delete("Observation", o.id)
        gone = repo.create({"resourceType": "Patient", "gender": "other"})
        repo.delete("Patient", gone.id)
        with repo.engine.begin() as conn:
            live = set(inspect(conn).get_table_names())
            for table in metadata.sorted_tables:
                if table.name in live and table.name != "schema_version" and \
                        conn.exec_driver_sql(f"SELECT count(*) FROM {table.name}").scalar_one() == 0:
                    conn.execute(table.insert().values(
                        {c.name: _synthetic_value(c, i) for i, c in enumerate(table.columns) if c.name in
                         {x["name"] for x in inspect(conn).get_columns(table.name)}}))
    finally:
        repo.close()


def _normal(v: Any) -> Any:
    if isinstance(v, memoryview):
        return bytes(v)
    return v


def _tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (metadata columns, typed), sorted: what a restore must reproduce exactly."""
    repo = open_repository(url)
    try:
        out = {}
        with repo.engine.connect() as conn:
            live = set(inspect(conn).get_table_names())
            for table in metadata.sorted_tables:
                if table.name not in live:
                    continue
                rows = [tuple(_normal(v) for v in r) for r in conn.execute(table.select())]
                if table.name == "schema_version":
                    rows = [(r[0],) for r in rows]  # applied_at: when the migration ran
                out[table.name] = sorted(rows, key=repr)
        return out
    finally:
        repo.close()


def _repository_view(url: str) -> dict[str, Any]:
    """What the API would serve: every resource, every version, a few searches."""
    repo = open_repository(url)
    try:
        view: dict[str, Any] = {}
        with repo.reader() as tx:
            current = tx.conn.exec_driver_sql("SELECT type, id FROM resources ORDER BY type, id").all()
            view["current"] = [(c.type, c.id, c.version, c.last_updated, c.deleted, c.content)
                               for t, i in current if (c := tx.current(t, i))]
            history, before = [], None
            while page := tx.history(before_seq=before, count=1000):
                history += [(h.seq, h.type, h.id, h.version, h.last_updated, h.method, h.deleted, h.content)
                            for h in page]
                before = page[-1].seq
            view["history"] = history
            for rtype, query in SEARCHES:
                found = run_search(tx, parse_search(rtype, [*query, ("_total", "accurate")]))
                view[f"{rtype}?{query}"] = (found.total, sorted(m.id for m in found.matches))
        return view
    finally:
        repo.close()


@pytest.fixture(scope="module")
def synthea() -> Path:
    if not SYNTHEA.is_dir():
        pytest.skip("../shared/data/synthea-r4 is not present")
    return SYNTHEA


@pytest.mark.parametrize("source,target", [("sqlite", "postgresql"), ("postgresql", "sqlite"),
                                           ("sqlite", "sqlite")])
def test_restore_reproduces_every_row_resource_version_and_search(synthea, tmp_path, request, source, target):
    src, dst = _url(source, tmp_path, request, "src"), _url(target, tmp_path, request, "dst")
    _populate(src)
    attachments = tmp_path / "src" / "attachments"
    (attachments / "ab" / "cd").mkdir(parents=True)
    big = os.urandom(bk.FILE_PIECE * 2 + 12345)
    (attachments / "ab" / "cd" / "scan.dcm").write_bytes(big)
    (attachments / "note.txt").write_text("Xin chào")
    seen = []
    s = backup(src, tmp_path / "b.sbk", PASS, attachments_dir=attachments, kdf_log2n=FAST,
               progress=lambda done, total: seen.append((done, total)))
    assert s.backend == source and s.attachments == 2 and s.attachment_bytes == len(big) + len("Xin chào".encode())
    assert seen[-1][0] == seen[-1][1] == s.rows
    assert s.versions > s.resources > 500

    restored_files = tmp_path / "dst" / "attachments"
    r = restore(tmp_path / "b.sbk", dst, PASS, attachments_dir=restored_files)
    assert r.rows == s.rows and r.resources == s.resources and r.header.backend == source

    assert _tables(dst) == _tables(src)
    before, after = _repository_view(src), _repository_view(dst)
    assert after["current"] == before["current"] and after["history"] == before["history"]
    assert any(v[0] for k, v in before.items() if k.startswith("Observation"))  # the searches find something
    assert after == before
    assert (restored_files / "ab" / "cd" / "scan.dcm").read_bytes() == big
    assert (restored_files / "note.txt").read_text() == "Xin chào"

    # The restored database takes new writes after the restored ones (sequences moved on PostgreSQL).
    repo = open_repository(dst)
    try:
        top = max(h[0] for h in after["history"])
        assert repo.create({"resourceType": "Patient", "gender": "male"}).seq > top
    finally:
        repo.close()


@pytest.fixture(scope="module")
def sqlite_backup(synthea, tmp_path_factory) -> tuple[str, Path]:
    """A populated SQLite database (not to be changed) and its backup, in 16 KiB chunks so the file has many."""
    where = tmp_path_factory.mktemp("sqlite_backup")
    src = f"sqlite:///{where / 'src' / 'sante.db'}"
    _populate(src)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bk, "CHUNK", 1 << 14)
        s = backup(src, where / "b.sbk", PASS, kdf_log2n=FAST)
    assert s.file_bytes > 8 * (1 << 14)
    return src, where / "b.sbk"


def _empty_or_absent(url: str) -> bool:
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite") and not Path(path).exists():
        return True
    repo = open_repository(url)
    try:
        with repo.reader() as tx:
            return tx.conn.exec_driver_sql("SELECT count(*) FROM resource_history").scalar_one() == 0
    finally:
        repo.close()


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_wrong_passphrase_or_key_fails_before_writing(sqlite_backup, tmp_path, request, target):
    _, file = sqlite_backup
    dst = _url(target, tmp_path, request, "dst")
    with pytest.raises(BackupError, match="wrong passphrase or key"):
        restore(file, dst, Secret.from_passphrase("tr0ub4dor&3"))
    with pytest.raises(BackupError, match="encrypted with a passphrase"):
        restore(file, dst, Secret.from_key(b"k" * 32))
    assert _empty_or_absent(dst)
    if target == "sqlite":
        assert not (tmp_path / "dst" / "sante.db").exists()


def _damage(file: Path, at: int, out: Path) -> Path:
    data = bytearray(file.read_bytes())
    data[at] ^= 0x01
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_flipped_byte_fails_and_leaves_the_target_as_it_was(sqlite_backup, tmp_path, request, target):
    _, file = sqlite_backup
    size = file.stat().st_size
    # The header, a chunk's length, mid-file, the last chunk (only the last two get as far as the database).
    for where in (10, bk.PREAMBLE_SIZE + 2, size // 3, size - 20)[2 if target == "postgresql" else 0:]:
        bad = _damage(file, where, tmp_path / f"bad{where}.sbk")
        dst = _url(target, tmp_path, request, f"dst{where}")
        with pytest.raises(BackupError, match=r"damaged|wrong passphrase|truncated|not a Sante"):
            restore(bad, dst, PASS, attachments_dir=tmp_path / f"att{where}")
        assert _empty_or_absent(dst)
        assert not (tmp_path / f"att{where}").exists()
        with pytest.raises(BackupError):
            verify(bad, PASS)

    # With --force into a database holding data: a damaged backup found late changes nothing there either.
    dst = _url(target, tmp_path, request, "full")
    restore(file, dst, PASS)
    repo = open_repository(dst)
    repo.create({"resourceType": "Patient", "id": "kept", "gender": "female"}, "kept")
    repo.close()
    before = _tables(dst)
    with pytest.raises(BackupError, match="damaged"):
        restore(_damage(file, size - 20, tmp_path / "late.sbk"), dst, PASS, force=True)
    assert _tables(dst) == before


def test_truncated_or_extended_file_fails_cleanly(sqlite_backup, tmp_path):
    _, file = sqlite_backup
    data = file.read_bytes()
    # Every chunk boundary, and some points inside chunks and the preamble.
    bounds, pos = [], bk.PREAMBLE_SIZE
    while pos < len(data):
        pos += 5 + int.from_bytes(data[pos + 1: pos + 5], "big")
        bounds.append(pos)
    assert bounds[-1] == len(data) and len(bounds) > 8
    for cut in [0, 5, bk.PREAMBLE_SIZE, bk.PREAMBLE_SIZE + 3, *bounds[:-1], bounds[3] + 100, len(data) - 1]:
        (tmp_path / "cut.sbk").write_bytes(data[:cut])
        dst = f"sqlite:///{tmp_path / f'dst{cut}' / 'sante.db'}"
        with pytest.raises(BackupError, match=r"truncated|not a Sante|damaged"):
            restore(tmp_path / "cut.sbk", dst, PASS)
        assert not (tmp_path / f"dst{cut}" / "sante.db").exists()
    (tmp_path / "long.sbk").write_bytes(data + b"\0")
    with pytest.raises(BackupError, match="after its last chunk"):
        verify(tmp_path / "long.sbk", PASS)
    # Chunks moved around: each is bound to its place.
    a, b = bounds[2], bounds[3]
    swapped = data[:bounds[1]] + data[a:b] + data[bounds[1]:a] + data[b:]
    (tmp_path / "swapped.sbk").write_bytes(swapped)
    with pytest.raises(BackupError, match="damaged or tampered with at chunk 2"):
        verify(tmp_path / "swapped.sbk", PASS)


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_restore_into_a_database_with_data_is_refused_unless_forced(sqlite_backup, tmp_path, request, target):
    src, file = sqlite_backup
    dst = _url(target, tmp_path, request, "dst")
    repo = open_repository(dst)
    repo.create({"resourceType": "Patient", "gender": "female"})
    repo.close()
    with pytest.raises(BackupError, match=r"not empty \(1 resources\).*--force"):
        restore(file, dst, PASS)
    restore(file, dst, PASS, force=True)
    assert _tables(dst) == _tables(src)
    # An empty database that already has the schema (a server started once) is fine without --force.
    fresh = _url(target, tmp_path, request, "fresh")
    open_repository(fresh).close()
    restore(file, fresh, PASS)
    assert _tables(fresh) == _tables(src)


def test_restore_refuses_a_data_folder_with_attachments(sqlite_backup, tmp_path):
    _, file = sqlite_backup
    att = tmp_path / "att"
    att.mkdir()
    (att / "old.bin").write_bytes(b"x")
    with pytest.raises(BackupError, match="not empty"):
        restore(file, f"sqlite:///{tmp_path / 'd' / 'sante.db'}", PASS, attachments_dir=att)


def test_key_file_backup_and_secrets(sqlite_backup, tmp_path):
    src, _ = sqlite_backup
    key = tmp_path / "backup.key"
    key.write_text(os.urandom(32).hex() + "\n")
    secret = Secret.resolve(key_file=str(key))
    backup(src, tmp_path / "k.sbk", secret)
    with pytest.raises(BackupError, match="encrypted with a key file"):
        verify(tmp_path / "k.sbk", PASS)
    with pytest.raises(BackupError, match="wrong passphrase or key"):
        verify(tmp_path / "k.sbk", Secret.from_key(os.urandom(32)))
    header, end = verify(tmp_path / "k.sbk", Secret.resolve(environ={"SANTE_BACKUP_KEY_FILE": str(key)}))
    assert end.tables["resources"] == header.tables[[t.name for t in header.tables].index("resources")].rows
    # Two backups of the same data with the same key share no key stream (a fresh salt, hence key, per file).
    backup(src, tmp_path / "k2.sbk", secret)
    assert (tmp_path / "k.sbk").read_bytes()[64:200] != (tmp_path / "k2.sbk").read_bytes()[64:200]
    for bad, msg in [(b"short", "32 raw bytes or 64 hexadecimal"), (b"", "32 raw bytes")]:
        (tmp_path / "bad.key").write_bytes(bad)
        with pytest.raises(BackupError, match=msg):
            Secret.resolve(key_file=str(tmp_path / "bad.key"))
    with pytest.raises(BackupError, match="no backup key"):
        Secret.resolve(environ={})
    (tmp_path / "pass").write_text("s3cret\n")
    assert Secret.resolve(str(tmp_path / "pass")) == Secret.from_passphrase("s3cret")


def test_rows_codec_keeps_types_and_non_finite_floats():
    rows = [(1, "a", 1, b"\x00\x01", 0.5, None), (2, None, 0, None, math.inf, math.nan),
            (3, "ü", None, b"", -math.inf, 1e-300)]
    payload = bk._encode_rows(list(rows), [2], [3], [4, 5], sqlite=True)
    back = bk._decode_rows(payload, [3], [4, 5])
    assert back[0] == [1, "a", True, b"\x00\x01", 0.5, None]
    assert back[1][:5] == [2, None, False, None, math.inf] and math.isnan(back[1][5])
    assert back[2] == [3, "ü", None, b"", -math.inf, 1e-300]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_backup_during_writes_is_one_consistent_snapshot(synthea, tmp_path, request, monkeypatch, backend):
    url = _url(backend, tmp_path, request, "src")
    _populate(url)
    monkeypatch.setattr(bk, "BATCH_ROWS", 200)
    monkeypatch.setattr(bk, "BATCH_ROWS_BINARY", 40)
    repo = open_repository(url)
    commits = 0
    stop = threading.Event()
    lock = threading.Condition()

    def writer() -> None:
        nonlocal commits
        n = 0
        while not stop.is_set():
            n += 1
            with repo.transaction() as tx:  # two versions in one transaction: a snapshot has both or neither
                p = tx.create({"resourceType": "Patient", "gender": "female", "name": [{"family": f"W{n}"}]})
                tx.update({"resourceType": "Patient", "gender": "male", "name": [{"family": f"W{n}"}]}, p.id)
            if n % 3 == 0:
                repo.delete("Patient", p.id)
            with lock:
                commits += 1
                lock.notify_all()

    def wait_for_writes(done: int, total: int) -> None:
        with lock:  # let the writer commit between every two batches the backup reads
            target = commits + 1
            assert lock.wait_for(lambda: commits >= target, timeout=30)

    t = threading.Thread(target=writer)
    t.start()
    try:
        backup(url, tmp_path / "live.sbk", PASS, kdf_log2n=FAST, progress=wait_for_writes)
    finally:
        stop.set()
        t.join()
        repo.close()
    assert commits > 20

    tables: dict[str, list[list[Any]]] = {}
    with BackupReader(tmp_path / "live.sbk", PASS) as reader:
        header = {t.name: t for t in reader.header.tables}
        for ev in reader.events():
            if isinstance(ev, bk.Rows):
                cols = [c for c, _ in ev.table.columns]
                tables.setdefault(ev.table.name, []).extend(dict(zip(cols, r)) for r in ev.rows)
    for name, spec in header.items():
        assert len(tables.get(name, [])) == spec.rows
    history = tables["resource_history"]
    current = {(r["type"], r["id"]): r for r in tables["resources"]}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for h in history:
        key = (h["type"], h["id"])
        if key not in latest or h["version"] > latest[key]["version"]:
            latest[key] = h
    assert latest.keys() == current.keys()  # no resource without its history, no history without its resource
    for key, h in latest.items():
        c = current[key]
        assert (c["version"], c["seq"], c["deleted"], c["content"]) == (h["version"], h["seq"], h["deleted"],
                                                                         h["content"])
    live = {k for k, c in current.items() if not c["deleted"]}
    for name in ("idx_token", "idx_string"):
        assert {(r["res_type"], r["res_id"]) for r in tables[name] if r["param"] != "test"} <= live
    written = [r for r in tables["resources"] if r["type"] == "Patient" and r["content"] and
               orjson.loads(r["content"]).get("name", [{}])[0].get("family", "").startswith("W")]
    assert all(orjson.loads(r["content"])["gender"] == "male" for r in written)  # no create without its update


def test_cli_backup_and_restore(synthea, tmp_path, monkeypatch, capsys):
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    _populate(f"sqlite:///{src_dir / 'sante.db'}")
    (src_dir / "attachments").mkdir()
    (src_dir / "attachments" / "a.pdf").write_bytes(b"%PDF-1.7 ...")
    key = tmp_path / "backup.key"
    key.write_bytes(os.urandom(32))
    monkeypatch.delenv("SANTE_DATABASE_URL", raising=False)
    monkeypatch.delenv("SANTE_BACKUP_PASSPHRASE", raising=False)
    monkeypatch.delenv("SANTE_BACKUP_KEY_FILE", raising=False)
    monkeypatch.setenv("SANTE_DATA_DIR", str(src_dir))

    assert main(["backup", str(tmp_path / "nightly.sbk")]) == 2
    assert "no backup key" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "nightly.sbk"), "--key-file", str(key)]) == 0
    out = capsys.readouterr().out
    assert "backed up" in out and "1 attachments" in out and out.count("\n") == 1
    assert (tmp_path / "nightly.sbk").stat().st_mode & 0o777 == 0o600

    assert main(["restore", str(tmp_path / "nightly.sbk"), "--check", "--key-file", str(key)]) == 0
    assert "intact" in capsys.readouterr().out

    monkeypatch.setenv("SANTE_DATA_DIR", str(dst_dir))
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    assert main(["restore", str(tmp_path / "nightly.sbk"), "--key-file", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "wrong passphrase or key" in err and err.count("\n") == 1 and err.startswith("sante: ")
    assert not dst_dir.exists() or not (dst_dir / "sante.db").exists()

    assert main(["restore", str(tmp_path / "nightly.sbk"), "--key-file", str(key)]) == 0
    assert "restored" in capsys.readouterr().out
    assert (dst_dir / "attachments" / "a.pdf").read_bytes() == b"%PDF-1.7 ..."
    assert _tables(f"sqlite:///{dst_dir / 'sante.db'}") == _tables(f"sqlite:///{src_dir / 'sante.db'}")

    assert main(["restore", str(tmp_path / "nightly.sbk"), "--key-file", str(key)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and err.count("\n") == 1

    (tmp_path / "pass").write_text("hunter2\n")
    assert main(["backup", str(tmp_path / "p.sbk"), "--passphrase-file", str(tmp_path / "pass")]) == 0
    monkeypatch.setenv("SANTE_BACKUP_PASSPHRASE", "hunter3")
    assert main(["restore", str(tmp_path / "p.sbk"), "--force"]) == 2
    assert "wrong passphrase" in capsys.readouterr().err
    monkeypatch.setenv("SANTE_BACKUP_PASSPHRASE", "hunter2")
    assert main(["restore", str(tmp_path / "p.sbk"), "--force"]) == 0
    assert main(["restore", str(tmp_path / "missing.sbk")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_backup_of_an_older_schema_restores_and_is_migrated(synthea, tmp_path, request, target):
    """A backup taken before later migrations: restored at its own version, then upgraded like any database (here
    the tables of every migration after v3 come back, the full-text index refilled from the resources)."""
    from sqlalchemy import create_engine

    from sante.store.schema import MIGRATIONS, schema_version

    scratch = create_engine(f"sqlite:///{tmp_path / 'v3.db'}")
    with scratch.begin() as conn:
        for step in MIGRATIONS[:3]:
            step(conn)
        v3_tables = set(inspect(conn).get_table_names())
    scratch.dispose()

    src = f"sqlite:///{tmp_path / 'src' / 'sante.db'}"
    _populate(src)
    expected = _repository_view(src)
    repo = open_repository(src)
    with repo.engine.begin() as conn:  # take the database back to schema v3
        found = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
        for name, _ in sorted(found, key=lambda f: not (f[1] or "").startswith("CREATE VIRTUAL")):
            if name not in v3_tables and name != "schema_version" and not name.startswith("sqlite_"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        conn.execute(schema_version.delete().where(schema_version.c.version > 3))
    repo.engine.dispose()

    s = backup(src, tmp_path / "old.sbk", PASS, kdf_log2n=FAST)
    assert s.schema_version == 3 and set(s.tables) == v3_tables | {"schema_version"}
    dst = _url(target, tmp_path, request, "dst")
    r = restore(tmp_path / "old.sbk", dst, PASS)
    assert r.schema_version == len(MIGRATIONS)
    restored = _tables(dst)
    original = _tables(src)
    for name in v3_tables:
        assert restored[name] == original[name], name
    assert _repository_view(dst) == expected
