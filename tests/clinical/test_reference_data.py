"""Reading packaged reference data: plain and gzip-compressed files, UTF-8 with or without a BOM."""

from __future__ import annotations

import gzip

from sante.clinical import reference_data


def test_reads_plain_and_gzip_files_alike(tmp_path, monkeypatch):
    data = tmp_path / "data" / "sub"
    data.mkdir(parents=True)
    text = "code\tname\n01\tThành phố Hà Nội\n"
    (data / "plain.tsv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (data / "packed.tsv.gz").write_bytes(gzip.compress(text.encode()))
    monkeypatch.setattr(reference_data.resources, "files", lambda package: tmp_path)
    expected = [{"code": "01", "name": "Thành phố Hà Nội"}]
    assert reference_data.read_csv("sub/plain.tsv", delimiter="\t") == expected
    assert reference_data.read_csv("sub/packed.tsv.gz", delimiter="\t") == expected
    assert reference_data.read_bytes("sub/packed.tsv.gz") == text.encode()


def test_packaged_files_are_readable():
    assert reference_data.read_bytes("vn-admin/communes_2025.csv.gz").startswith(b"code,name,")
    assert reference_data.read_text("loinc/observations.tsv").startswith("code\tkey\t")
    assert len(reference_data.read_csv("icd10/chapters.tsv", delimiter="\t")) == 22
