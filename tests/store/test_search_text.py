"""Full-text search, `_text` (the narrative) and `_content` (every string), on both backends."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from sante.anomaly import Anomaly
from sante.store import open_repository
from sante.store.bundles import process_bundle
from sante.store.indexer import text_entries, words
from sante.store.loader import load_paths
from sante.store.schema import MIGRATIONS, text_search_mode
from sante.store.search import parse_search, run_search
from tests.support.api import api_client

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def patient(pid: str, family: str, given: str, story: str | None = None, **more) -> dict:
    res = {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": [given]}], **more}
    if story is not None:
        res["text"] = {"status": "generated", "div": f"<div {XHTML}>{story}</div>"}
    return res


PEOPLE = [
    patient("p1", "Nguyễn", "Văn An", "<p>Bệnh nhân <b>tiểu đường</b> type&#160;2, theo dõi huyết áp.</p>",
            gender="male", address=[{"city": "Hà Nội"}]),
    patient("p2", "Nguyen", "Thị Bình", "<p>Hen phế quản</p>", gender="female", address=[{"city": "Đà Nẵng"}]),
    patient("p3", "Trần", "Đức", None, gender="male", address=[{"city": "Huế"}],
            managingOrganization={"reference": "Organization/asthma-clinic", "display": "Phòng khám Hen"}),
]


@pytest.fixture
def people(repo):
    for p in PEOPLE:
        repo.update(p, p["id"])
    return repo


def find(repo, query: str, rtype: str = "Patient") -> list[str]:
    pairs = [tuple(part.split("=", 1)) for part in query.split("&")]
    with repo.reader() as tx:
        return sorted(m.id for m in run_search(tx, parse_search(rtype, pairs)).matches)


def test_words_fold_accents_case_and_punctuation() -> None:
    assert words("Nguyễn Văn ĐỨC, Đà-Nẵng; HbA1c 7.5%  x_y") == ["nguyen", "van", "duc", "da", "nang", "hba1c",
                                                                  "7", "5", "x", "y"]
    assert words("a a A á") == ["a"]
    assert words("!!! --") == []


def test_text_entries_narrative_versus_content() -> None:
    rows = dict(text_entries(PEOPLE[0]))
    assert rows["_text"] == "benh nhan tieu duong type 2 theo doi huyet ap"
    content = rows["_content"].split()
    assert {"nguyen", "van", "an", "male", "ha", "noi", "tieu", "duong"} <= set(content)
    assert len(content) == len(set(content))  # distinct words only
    # ids, references, URIs and dates are not text; the narrative's XHTML tags and namespace are not either.
    rows = dict(text_entries(PEOPLE[2] | {"birthDate": "2001-01-05", "meta": {"versionId": "7"}}))
    assert "_text" not in rows
    assert not {"asthma", "clinic", "organization", "p3", "2001", "xhtml", "div", "7"} & set(rows["_content"].split())
    assert {"phong", "kham", "hen"} <= set(rows["_content"].split())


def test_text_searches_the_narrative_only(people) -> None:
    assert find(people, "_text=tiểu đường") == ["p1"]
    assert find(people, "_text=TIEU DUONG") == ["p1"]
    assert find(people, "_text=hen") == ["p2"]  # p3 has "Hen" only in a display, not in a narrative
    assert find(people, "_text=nguyen") == []  # the name is not in any narrative
    assert find(people, "_text=khong co") == []


def test_content_searches_every_string(people) -> None:
    assert find(people, "_content=hen") == ["p2", "p3"]  # narrative of p2, managingOrganization.display of p3
    assert find(people, "_content=Nguyễn") == ["p1", "p2"]
    assert find(people, "_content=nguyen") == ["p1", "p2"]
    assert find(people, "_content=duc") == ["p3"]  # Đức: đ folds to d
    assert find(people, "_content=đà nẵng") == ["p2"]
    assert find(people, "_content=tiểu đường") == ["p1"]  # the narrative is content too
    assert find(people, "_content=asthma") == []  # a reference is not text
    assert find(people, "_content=1980") == []


def test_words_and_values_or(people) -> None:
    assert find(people, "_content=nguyen an") == ["p1"]  # every word must match
    assert find(people, "_content=nguyen duc") == []
    assert find(people, "_content=duc,binh") == ["p2", "p3"]  # comma: any value
    assert find(people, "_content=nguyen an,tran duc") == ["p1", "p3"]
    assert find(people, "_content=nguyen&_content=binh") == ["p2"]  # repeated: both


def test_words_match_word_starts(people) -> None:
    assert find(people, "_content=nguy") == ["p1", "p2"]
    assert find(people, "_text=đườ") == ["p1"]
    assert find(people, "_content=guyen") == []  # inside a word: no
    assert find(people, "_content=nguyenx") == []


def test_text_with_other_criteria_and_chains(people) -> None:
    assert find(people, "gender=male&_content=nguyen") == ["p1"]
    assert find(people, "_content=nguyen&gender=female") == ["p2"]
    assert find(people, "_text:missing=true") == ["p3"]
    assert find(people, "_text:missing=false") == ["p1", "p2"]
    people.create({"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
                   "subject": {"reference": "Patient/p1"}, "valueString": "cao"}, "o1")
    assert find(people, "subject._text=tieu duong", "Observation") == ["o1"]
    assert find(people, "subject:Patient._content=binh", "Observation") == []
    assert find(people, "_has:Observation:subject:_content=hba1c") == ["p1"]


def test_update_replaces_and_delete_removes_the_text(people) -> None:
    people.update(patient("p1", "Lê", "Văn An", "<p>Viêm phổi</p>"), "p1")
    assert find(people, "_text=tieu duong") == []
    assert find(people, "_content=tieu") == []
    assert find(people, "_text=viem phoi") == ["p1"]
    assert find(people, "_content=le van") == ["p1"]
    assert find(people, "_content=nguyen") == ["p2"]
    people.delete("Patient", "p2")
    assert find(people, "_content=nguyen") == []
    assert find(people, "_text=hen") == []
    people.update(patient("p2", "Nguyen", "Thị Bình"), "p2")  # back from the deletion, without a narrative
    assert find(people, "_content=binh") == ["p2"]
    assert find(people, "_text=hen") == []
    check_fts(people)


def check_fts(repo) -> None:
    """SQLite: the FTS5 index agrees with idx_text (FTS5 compares them itself)."""
    if repo.dialect == "sqlite":
        with repo.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO idx_text_fts (idx_text_fts) VALUES ('integrity-check')")


def test_rows_written_around_the_repository_are_indexed_on_open(database_url) -> None:
    repo = open_repository(database_url)
    repo.update(PEOPLE[0], "p1")
    with repo.engine.begin() as conn:  # as a restore writes them: straight into the table
        mark = "?" if repo.dialect == "sqlite" else "%s"
        conn.exec_driver_sql(f"INSERT INTO idx_text (res_type, res_id, param, words) VALUES ({mark}, {mark}, "
                             f"{mark}, {mark})", ("Patient", "p1", "_content", "restored words"))
    repo.close()
    repo = open_repository(database_url)
    try:
        assert find(repo, "_content=restored") == ["p1"]
        assert find(repo, "_content=nguyen") == ["p1"]
        repo.update(PEOPLE[1], "p1")  # replaces both rows of p1
        assert find(repo, "_content=restored") == []
        assert find(repo, "_content=binh") == ["p1"]
        check_fts(repo)
    finally:
        repo.close()


def test_bad_text_searches_are_400(people) -> None:
    for query in ("_text=!!!", "_content:exact=nguyen", "_text:contains=duong"):
        with pytest.raises(Anomaly) as e:
            find(people, query)
        assert e.value.category.status == 400


def test_transaction_bundles_index_text(repo) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": patient("x", "Phạm", "Thu", "Sốt"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("t2", "Võ", "Minh"), "request": {"method": "PUT", "url": "Patient/t2"}},
    ]}
    out = process_bundle(repo, bundle)
    created = out["entry"][0]["response"]["location"].split("/")[1]
    assert find(repo, "_text=sot") == [created]
    assert find(repo, "_content=pham thu,vo minh") == sorted([created, "t2"])
    process_bundle(repo, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Patient/{created}"}},
        {"resource": patient("t2", "Võ", "Lan"), "request": {"method": "PUT", "url": "Patient/t2"}},
    ]})
    assert find(repo, "_content=pham") == []
    assert find(repo, "_content=minh") == []
    assert find(repo, "_content=lan") == ["t2"]
    check_fts(repo)


def test_bulk_load_indexes_text(repo, tmp_path, shared_dir) -> None:
    synthea = sorted((shared_dir / "data" / "synthea-r4").glob("*.json.gz"))[:2]
    for f in synthea:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    summary = load_paths(repo, [tmp_path], workers=1)
    assert not summary.failures and summary.resources > 100
    first = orjson.loads(gzip.decompress(synthea[0].read_bytes()))
    pat = next(e["resource"] for e in first["entry"] if e["resource"]["resourceType"] == "Patient")
    family = pat["name"][0]["family"]
    found = find(repo, f"_content={family}&birthdate={pat['birthDate']}")
    assert len(found) == 1
    # Synthea's narratives say only "Generated by Synthea ...": the name is content, not narrative.
    assert find(repo, f"_text={family}&birthdate={pat['birthDate']}") == []
    assert found[0] in find(repo, f"_text=generated synthea&birthdate={pat['birthDate']}")
    assert find(repo, "_content=zzzznotaword") == []


def test_existing_databases_are_indexed_on_upgrade(database_url) -> None:
    repo = open_repository(database_url)
    for p in PEOPLE:
        repo.update(p, p["id"])
    repo.delete("Patient", "p3")
    # Back to the schema before idx_text: as if these resources were written by an older Sante.
    with repo.engine.begin() as conn:
        if repo.dialect == "sqlite":
            conn.exec_driver_sql("DROP TABLE idx_text_fts")
        conn.exec_driver_sql("DROP TABLE idx_text")
        text_version = [m.__name__ for m in MIGRATIONS].index("_v5_text_index") + 1
        conn.exec_driver_sql(f"DELETE FROM schema_version WHERE version >= {text_version}")
    repo.close()
    repo = open_repository(database_url)
    try:
        assert repo.schema_version == len(MIGRATIONS)
        assert find(repo, "_content=nguyen") == ["p1", "p2"]
        assert find(repo, "_text=tieu duong") == ["p1"]
        assert find(repo, "_content=duc") == []  # deleted before the upgrade
    finally:
        repo.close()


def test_sqlite_without_fts5_falls_back_to_like(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    repo = open_repository(url)
    with repo.reader() as tx:
        assert text_search_mode(tx.conn) == "fts5"
    with repo.engine.begin() as conn:  # what a SQLite without FTS5 would have made
        conn.exec_driver_sql("DROP TABLE idx_text_fts")
        conn.exec_driver_sql("DROP TABLE idx_text_fts_synced")
    repo.close()
    repo = open_repository(url)
    try:
        for p in PEOPLE:
            repo.update(p, p["id"])
        with repo.reader() as tx:
            assert text_search_mode(tx.conn) == "like"
        assert find(repo, "_content=nguyen an,tran duc") == ["p1", "p3"]
        assert find(repo, "_content=nguy") == ["p1", "p2"]
        assert find(repo, "_content=guyen") == []
        assert find(repo, "_text=hen") == ["p2"]
    finally:
        repo.close()


def test_text_search_over_http(people, tmp_path) -> None:
    client = api_client(people, tmp_path)
    r = client.get("/fhir/Patient", params={"_content": "nguyễn"})
    assert r.status_code == 200, r.text
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == ["p1", "p2"]
    r = client.get("/fhir/Patient", params={"_text": "tieu duong,hen"})
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == ["p1", "p2"]
    r = client.post("/fhir/Patient/_search", data={"_content": "hen", "gender": "male"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["p3"]
    r = client.get("/fhir/Patient", params={"_text": "***"})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    cs = client.get("/fhir/metadata").json()
    patient_params = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Patient")["searchParam"]
    assert {"_text", "_content"} <= {p["name"] for p in patient_params}


def test_words_that_look_like_numbers_match_on_every_backend(repo) -> None:
    # PostgreSQL's text-search parser would read 4e0b as the float 4e0 and a b: the index keeps words as they are.
    repo.update(patient("h1", "Hồ", "Xuân", identifier=[{"value": "8334e509-4e0b-9e2c"}], gender="other"), "h1")
    repo.update(patient("h2", "Hồ", "Thu", identifier=[{"value": "4e0"}]), "h2")
    assert find(repo, "_content=4e0b") == ["h1"]
    assert find(repo, "_content=9e2c 8334e") == ["h1"]
    assert find(repo, "_content=4e0") == ["h1", "h2"]
    assert find(repo, "_content=4e1") == []


def test_text_search_survives_backup_and_restore(database_url, tmp_path) -> None:
    from sante.store.backup import Secret, backup, restore

    source = f"sqlite:///{tmp_path / 'source.db'}"
    repo = open_repository(source)
    for p in PEOPLE:
        repo.update(p, p["id"])
    repo.close()
    secret = Secret.from_passphrase("text search")
    backup(source, tmp_path / "b.sbk", secret, kdf_log2n=10)
    restore(tmp_path / "b.sbk", database_url, secret)  # idx_text rows come back; the full-text index is derived
    repo = open_repository(database_url)
    try:
        assert find(repo, "_text=tieu duong") == ["p1"]
        assert find(repo, "_content=nguyen") == ["p1", "p2"]
        repo.update(PEOPLE[1] | {"name": [{"family": "Lý"}]}, "p2")
        assert find(repo, "_content=nguyen") == ["p1"]
        check_fts(repo)
    finally:
        repo.close()
