"""Fuzzing the API: whatever arrives (queries, bodies, paths, headers), the answer is never a 5xx."""

from __future__ import annotations

from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sante.store import open_repository
from tests.support.api import api_client

TYPES = ["Patient", "Observation", "Encounter", "Bundle", "Nope", "metadata", "_history", "$export"]
PARAMS = ["name", "family", "birthdate", "identifier", "subject", "subject:Patient.name", "code", "date",
          "value-quantity", "_id", "_lastUpdated", "_count", "_sort", "_include", "_revinclude", "_summary",
          "_elements", "_total", "_cursor", "_has:Observation:subject:code", "gender:missing", "name:contains",
          "combo-code-value-quantity", "_since", "_format", "unknown-param"]
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | text
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(text, c, max_size=4),
                           max_leaves=20)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    c = api_client(open_repository(f"sqlite:///{d / 'f.db'}"), d)
    c.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "name": [{"family": "Nguyễn"}]})
    return c


def assert_fhir_answer(r) -> None:
    assert r.status_code < 500, r.text[:500]
    if r.status_code >= 400 and r.content:
        assert r.json()["resourceType"] == "OperationOutcome"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=st.sampled_from(TYPES), query=st.lists(st.tuples(st.sampled_from(PARAMS), text), max_size=4))
def test_search_queries_never_fail(client, rtype, query):
    assert_fhir_answer(client.get(f"/fhir/{rtype}", params=query))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=st.sampled_from(TYPES), body=json_values, method=st.sampled_from(["post", "put"]), typed=st.booleans())
def test_arbitrary_bodies_never_fail(client, rtype, body, method, typed):
    if isinstance(body, dict) and typed:
        body = {"resourceType": rtype, **body}
    url = f"/fhir/{rtype}" if method == "post" else f"/fhir/{rtype}/x1"
    assert_fhir_answer(getattr(client, method)(url, content=orjson.dumps(body),
                                               headers={"Content-Type": "application/fhir+json"}))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(text, min_size=1, max_size=4), if_match=text,
       prefer=st.sampled_from(["", "return=minimal", "handling=strict", "respond-async"]))
def test_arbitrary_paths_and_headers_never_fail(client, path, if_match, prefer):
    url = "/fhir/" + "/".join(quote(p, safe="$_") or "x" for p in path)
    header = "".join(ch for ch in if_match if " " <= ch <= "~")  # HTTP headers carry printable ASCII
    for method in ("get", "delete"):
        assert_fhir_answer(getattr(client, method)(url, headers={"If-Match": header, "Prefer": prefer}))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.fixed_dictionaries({
    "request": st.fixed_dictionaries({"method": st.sampled_from(["POST", "PUT", "GET", "DELETE", "PATCH", "X"]),
                                      "url": st.sampled_from(["Patient", "Patient/p1", "Patient?name=x", "Nope/1",
                                                              "Observation?code=", ""])}),
    "resource": json_values}), max_size=4), kind=st.sampled_from(["transaction", "batch", "collection"]))
def test_arbitrary_bundles_never_fail(client, entries, kind):
    bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
    assert_fhir_answer(client.post("/fhir", content=orjson.dumps(bundle),
                                   headers={"Content-Type": "application/fhir+json"}))
