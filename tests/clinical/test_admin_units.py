"""Viet Nam's administrative units: the 2025 two-level units, accent-insensitive search, pre-reform mappings,
FHIR Address, and agreement of the packaged copy with the reference data in ../shared."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from sante.clinical import admin_units as au
from sante.clinical.reference_data import read_csv
from sante.fhir.validate import validate
from sante.store.index_values import fold


def test_thirty_four_provinces_and_their_communes():
    provinces = au.provinces()
    assert len(provinces) == 34
    assert [p.code for p in provinces] == sorted(p.code for p in provinces)
    assert sum(len(au.communes(p.code)) for p in provinces) == 3321
    # each province's commune count as published in the province table matches the communes listed
    published = {r["code"]: int(r["commune_count"]) for r in read_csv("vn-admin/provinces_2025.csv")}
    assert {p.code: len(au.communes(p.code)) for p in provinces} == published
    types = Counter(c.type for p in provinces for c in au.communes(p.code))
    assert types == {"Xã": 2621, "Phường": 687, "Đặc khu": 13}


def test_lookup_by_code():
    assert au.province("01").name == "Thành phố Hà Nội"
    assert au.province(1) == au.province("01")
    assert au.province("02") is None  # Hà Giang no longer exists
    ba_dinh = au.commune("00004")
    assert (ba_dinh.name, ba_dinh.type, ba_dinh.province_code) == ("Phường Ba Đình", "Phường", "01")
    assert au.commune(4) == ba_dinh
    assert au.commune("99999") is None
    assert au.communes("02") == []


def test_search_is_accent_and_case_insensitive():
    with_marks = au.search_communes("Đống Đa")
    without = au.search_communes("dong da")
    assert with_marks == without
    assert without[0].name == "Phường Đống Đa" and without[0].province_code == "01"
    assert au.search_communes("NGUYỄN HUỆ") == au.search_communes("nguyen hue")
    # typed with diacritics, names spelled that way come first: Nguyễn before Nguyên (both fold to "nguyen")
    nguyen = au.search_communes("Nguyễn", limit=100)
    spelled = [c for c in nguyen if "Nguyễn" in c.name]
    assert spelled and nguyen[: len(spelled)] == spelled
    assert any("Nguyên" in c.name for c in au.search_communes("nguyen", limit=100))
    assert au.search_communes("nguyen hue")[0].short_name == "Nguyễn Huệ"
    # every result holds every query word at the start of a word of its name or its province's name
    results = au.search_communes("xa binh", limit=50)
    assert len(results) == 50
    for c in results:
        words = fold(f"{c.name} {au.province(c.province_code).short_name}").split()
        assert any(w.startswith("xa") for w in words) and any(w.startswith("binh") for w in words)


def test_search_ranking_and_filters():
    results = au.search_communes("ba dinh")
    assert results[0].code == "00004"  # whole short name, first province
    assert all(r.short_name in ("Ba Đình", "Ba Dinh") for r in results[:3])
    assert au.search_communes("00004") == [au.commune("00004")]
    assert [c.name for c in au.search_communes("sai gon", province_code="79")] == ["Phường Sài Gòn"]
    assert au.search_communes("sai gon", province_code="01") == []
    assert len(au.search_communes("xa", limit=7)) == 7
    assert au.search_communes("   ") == []
    # the province's name narrows a commune name shared by several provinces
    in_hanoi = au.search_communes("ba dinh ha noi")
    assert [c.code for c in in_hanoi] == ["00004"]


def test_legacy_wards_map_to_todays_communes():
    # Phường Phúc Xá (Ba Đình) became part of Phường Hồng Hà
    assert [c.name for c in au.legacy_ward_to_commune("00001")] == ["Phường Hồng Hà"]
    # Phường Cống Vị was split between two new wards
    assert {c.name for c in au.legacy_ward_to_commune("00007")} == {"Phường Giảng Võ", "Phường Ngọc Hà"}
    assert au.legacy_ward_to_commune("99999") == []
    # every pre-reform ward maps to at least one existing commune
    wards = read_csv("vn-admin/legacy_wards.csv.gz")
    assert len(wards) == 10035
    assert all(au.legacy_ward_to_commune(w["code"]) for w in wards)


def test_legacy_provinces_and_island_districts():
    assert len(au.legacy_provinces()) == 63
    assert au.legacy_province_to_province("02").name == "Tỉnh Tuyên Quang"
    assert au.legacy_province_to_province("79").name == "Thành phố Hồ Chí Minh"
    assert au.legacy_province_to_province("77").code == "79"  # Bà Rịa - Vũng Tàu joined Hồ Chí Minh City
    assert au.legacy_province_to_province("03") is None
    # Côn Đảo district had no wards: the district itself became a special zone
    assert [c.name for c in au.legacy_district_to_communes("755")] == ["Đặc khu Côn Đảo"]
    assert au.legacy_district("001").name == "Quận Ba Đình"
    assert au.legacy_ward("00001").name == "Phường Phúc Xá"


def test_fhir_address_is_valid_and_carries_the_codes():
    address = au.fhir_address("12 Hàng Bài", "00070")
    assert address["city"] == "Phường Hoàn Kiếm"
    assert address["state"] == "Thành phố Hà Nội"
    assert address["country"] == "VN"
    assert address["line"] == ["12 Hàng Bài"]
    assert address["text"] == "12 Hàng Bài, Phường Hoàn Kiếm, Thành phố Hà Nội"
    assert "district" not in address
    ext = address["extension"][0]
    assert ext["url"] == au.ADDRESS_UNIT_EXTENSION
    codes = {e["url"]: e["valueCoding"]["code"] for e in ext["extension"]}
    assert codes == {"commune": "00070", "province": "01"}
    legacy = au.fhir_legacy_address(["Số 5", "Ngõ 10"], "00007")
    assert (legacy["city"], legacy["district"], legacy["state"]) == (
        "Phường Cống Vị",
        "Quận Ba Đình",
        "Thành phố Hà Nội",
    )
    patient = {"resourceType": "Patient", "address": [address, legacy, au.fhir_address(None, "26732", use="temp")]}
    assert validate(patient) == []
    with pytest.raises(KeyError):
        au.fhir_address("x", "99999")
    with pytest.raises(KeyError):
        au.fhir_legacy_address("x", "99999")


def test_describe_address_old_and_new():
    assert au.describe_address(au.fhir_address("12 Hàng Bài", "00070")) == (
        "12 Hàng Bài, Phường Hoàn Kiếm, Thành phố Hà Nội"
    )
    assert au.describe_address(au.fhir_legacy_address("1 Phúc Xá", "00001")) == (
        "1 Phúc Xá, Phường Phúc Xá, Quận Ba Đình, Thành phố Hà Nội (nay: Phường Hồng Hà, Thành phố Hà Nội)"
    )
    split = au.describe_address(au.fhir_legacy_address(None, "00007"))
    assert split.startswith("Phường Cống Vị, Quận Ba Đình, Thành phố Hà Nội (nay: ")
    assert "Phường Giảng Võ, Thành phố Hà Nội" in split and " hoặc " in split
    # an address written by hand, without codes
    plain = {"line": ["3 Lê Lợi"], "city": "Phường Bến Thành", "district": "Quận 1", "state": "TP. Hồ Chí Minh"}
    assert au.describe_address(plain) == "3 Lê Lợi, Phường Bến Thành, Quận 1, TP. Hồ Chí Minh"
    assert au.describe_address({"text": "Hà Nội"}) == "Hà Nội"


def test_pre_reform_tables_load_only_when_asked():
    au._legacy.cache_clear()
    au.province("01")
    au.search_communes("ba dinh")
    au.fhir_address(None, "00004")
    assert au._legacy.cache_info().currsize == 0
    au.legacy_province("01")
    assert au._legacy.cache_info().currsize == 1
    assert au._current() is au._current()


def test_packaged_data_matches_the_reference_data(shared_dir):
    src = shared_dir / "data" / "vn-admin"
    for name in ("provinces_2025.csv", "province_old_to_new_2025.csv", "legacy_provinces_63.csv"):
        with open(src / name, encoding="utf-8") as f:
            assert read_csv(f"vn-admin/{name}") == list(csv.DictReader(f)), name
    for name in ("communes_2025.csv", "ward_old_to_new_2025.csv", "legacy_districts.csv", "legacy_wards.csv"):
        with open(src / name, encoding="utf-8") as f:
            assert read_csv(f"vn-admin/{name}.gz") == list(csv.DictReader(f)), name
