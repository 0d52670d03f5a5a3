"""kill -9 during a bulk load: what was acknowledged survives, and no transaction Bundle is half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson

BUNDLES = 150
OBS_PER_BUNDLE = 6

LOADER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sante.store import open_repository
    from sante.store.loader import load_paths

    repo = open_repository(sys.argv[1])
    def ack(path, written, failed):
        if not failed:  # printed only after the bundle's commit
            print("ACK", path.name, written, flush=True)
    load_paths(repo, [Path(sys.argv[2])], ack, group_resources=30)  # many commits: the kill lands between
    print("DONE", flush=True)
    """
)


def write_bundles(folder: Path) -> None:
    folder.mkdir()
    for n in range(BUNDLES):
        entries = [{
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
            "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test:bundle", "value": f"b{n}"}]},
            "request": {"method": "POST", "url": "Patient"},
        }]
        for k in range(OBS_PER_BUNDLE):
            entries.append({
                "resource": {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "urn:test:bundle", "code": f"b{n}"}]},
                             "subject": {"reference": f"urn:uuid:00000000-0000-4000-8000-{n:012d}"},
                             "valueInteger": k},
                "request": {"method": "POST", "url": "Observation"},
            })
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        (folder / f"bundle-{n:04d}.json").write_bytes(orjson.dumps(bundle))


def test_kill_9_loses_nothing_acknowledged(database_url, tmp_path):
    from sante.store import open_repository
    from sante.store.search import parse_search, run_search

    folder = tmp_path / "bundles"
    write_bundles(folder)
    script = tmp_path / "loader.py"
    script.write_text(LOADER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), database_url, str(folder)], stdout=subprocess.PIPE,
                            text=True, env=env)
    acked: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ACK"):
            acked.append(line.split()[1])
        if len(acked) >= 20 or not line:
            break
    os.kill(proc.pid, signal.SIGKILL)  # mid-load, with a bundle most likely in flight
    rest, _ = proc.communicate(timeout=30)
    # A line cut by the kill (no newline) was never fully acknowledged: only complete lines count.
    acked += [ln.split()[1] for ln in rest.split("\n")[:-1] if ln.startswith("ACK ") and len(ln.split()) == 3]
    assert "DONE" not in rest, "the loader finished before it was killed: make the load longer"
    assert len(acked) >= 20

    repo = open_repository(database_url)
    complete = set()
    with repo.reader() as tx:
        for n in range(BUNDLES):
            patients = run_search(tx, parse_search("Patient", [("identifier", f"urn:test:bundle|b{n}")])).matches
            observations = run_search(tx, parse_search("Observation", [("code", f"urn:test:bundle|b{n}"),
                                                                        ("_count", "100")])).matches
            assert (len(patients), len(observations)) in ((0, 0), (1, OBS_PER_BUNDLE)), f"bundle {n} is half-written"
            if patients:
                assert {o.resource["subject"]["reference"] for o in observations} == {f"Patient/{patients[0].id}"}
                complete.add(f"bundle-{n:04d}.json")
    assert set(acked) <= complete, f"acknowledged but lost: {sorted(set(acked) - complete)}"
    repo.close()
