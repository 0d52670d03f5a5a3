"""Schemathesis over the OpenAPI description (/fhir/openapi.json): whatever it generates for each operation from
the description (valid and invalid path and query parameters, headers, bodies), the server never answers 5xx.

In-process (ASGI), over a small seeded SQLite repository, as an admin. Two phases, bounded to keep the run under
a minute on two cores: random generation ("fuzzing", valid and invalid data, EXAMPLES per operation) and the
deterministic boundary cases for invalid data ("coverage", negative mode: wrong types, huge numbers, missing
required values; its positive mode mostly enumerates the ~150 resource types of every `{rtype}`, which the random
phase samples instead). Derandomised, so a run is reproducible; SANTE_FUZZ_EXAMPLES=200 SANTE_FUZZ_RANDOM=1 for
a longer, exploring run.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from sante.api import create_app
from sante.store import open_repository

EXAMPLES = int(os.environ.get("SANTE_FUZZ_EXAMPLES", "8"))  # per operation, random phase


def _seeded_app() -> tuple[Any, dict[str, str]]:
    d = Path(tempfile.mkdtemp(prefix="sante-openapi-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    repo = open_repository(f"sqlite:///{d / 'fuzz.db'}")
    atexit.register(repo.close)
    app = create_app(repo, data_dir=d)
    token = app.state.security.tokens.issue(subject="fuzz", role="admin", scopes="system/*.cruds").token
    with repo.transaction() as tx:  # a little of what the generated ids and searches may hit
        tx.update({"resourceType": "Patient", "id": "p1", "name": [{"family": "Nguyễn"}]}, "p1")
        tx.update({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/p1"}}, "o1")
        tx.update({"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                   "member": [{"entity": {"reference": "Patient/p1"}}]}, "g1")
    return app, {"Authorization": f"Bearer {token}"}


# Loaded at import, not from a fixture: schemathesis' lazy loader (schemathesis.pytest.from_fixture) fails on
# pytest 9 (it sets the removed Node._nodeid).
APP, AUTH = _seeded_app()
schema = schemathesis.openapi.from_asgi("/fhir/openapi.json", APP, headers=AUTH)
schema.config.generation.update(max_examples=EXAMPLES)
schema.config.phases.update(phases=["coverage", "fuzzing"])
schema.config.phases.coverage.generation.update(modes=["negative"])


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=not os.environ.get("SANTE_FUZZ_RANDOM"))
def test_no_operation_answers_5xx(case):
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
