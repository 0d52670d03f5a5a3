"""The loader: files, folders, NDJSON, batches and transactions through worker processes, byte-identical results."""

from __future__ import annotations

import orjson

from sante.store.bundles import PreparedBundle, prepare_bundle


def test_prepared_bundle_survives_the_wire_unchanged():
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "meta": {"tag": [{"code": "t"}]}, "name": [{"family": "Đỗ"}],
                      "multipleBirthInteger": 2},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "valueQuantity": {"value": 1.5, "unit": "kg"},
                      "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    prepared = prepare_bundle(bundle)
    back = PreparedBundle.from_bytes(prepared.to_bytes())
    for before, after in zip(prepared.entries, back.entries):
        after.materialize()
        assert after.resource == before.resource
        assert {k: [list(r) for r in v] for k, v in (after.rows or {}).items()} == {
            k: [[float(x) if type(x).__name__ == "Decimal" else x for x in r] for r in v]
            for k, v in (before.rows or {}).items() if v}
    assert back.entries[1].resource["subject"]["reference"] == f"Patient/{prepared.entries[0].rid}"


def test_load_folder_of_mixed_files(repo, tmp_path):
    from sante.store.loader import load_paths
    from sante.store.search import parse_search, run_search

    (tmp_path / "one.json").write_bytes(orjson.dumps({"resourceType": "Patient", "id": "a1", "gender": "male"}))
    (tmp_path / "many.ndjson").write_bytes(b"\n".join(orjson.dumps(
        {"resourceType": "Patient", "id": f"n{i}", "gender": "female"}) for i in range(3)))
    (tmp_path / "batch.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "gender": "other"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "xyz"}, "request": {"method": "POST", "url": "Patient"}},
    ]}))
    (tmp_path / "broken.json").write_bytes(b"{not json")
    acks = []
    summary = load_paths(repo, [tmp_path], lambda path, n, failed: acks.append((path.name, n, failed)))
    with repo.reader() as tx:
        genders = sorted(m.resource["gender"] for m in run_search(tx, parse_search("Patient", [])).matches)
    assert genders == ["female", "female", "female", "male", "other"]
    assert len(summary.failures) == 2  # the invalid batch entry and the unreadable file
    assert dict((a[0], a[2]) for a in acks) == {"batch.json": True, "broken.json": True, "many.ndjson": False,
                                                "one.json": False}
