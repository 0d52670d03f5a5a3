"""HTTP load on loopback: 50 concurrent clients run a read / search / write mix against `sante serve`.

    python bench/http_load.py [--clients 50] [--seconds 12] [--workers 2] [--rounds 4]

Every request carries a bearer token and is authorized and audited, as in production. The same load is also run
against the same server with audit writing switched off (bench/_app_without_audit.py), so the audit trail's cost
is measured in the same run (goal: at most 10% fewer requests per second): rounds of audit off then on, the
overhead being the median over the rounds.

The server runs in its own processes (uvicorn) on 127.0.0.1 with an SQLite database seeded with a few Synthea
patients. The load generator is wrk (Debian's package, C, with a Lua script for the mix) when installed, so the
generator is not what is measured; otherwise asyncio + httpx in this process (much heavier on the same 2 cores).
Request loops are bounded in time and count.
Ends with one line: `http: R req/s, p50/p95/p99 ms, E errors, audit overhead A% (goal >= 1,500 req/s,
0 errors, <= 10%): ok|short`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea-r4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(data_dir: Path, bundles: int) -> str:
    """Load some Synthea patients; returns a bearer token for a system client."""
    from sante.api.security import Security
    from sante.store import open_repository
    from sante.store.loader import load_paths

    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    files = sorted(SYNTHEA.glob("*.json.gz"))[:bundles]
    summary = load_paths(repo, files, workers=1)
    token = Security.for_repository(repo, data_dir).tokens.issue(
        subject="bench", role="system", scopes="system/*.cruds", lifetime=7200).token
    repo.close()
    print(f"seeded {summary.resources:,} resources from {len(files)} bundles")
    return token


def start_server(data_dir: Path, port: int, workers: int, audit: bool = True) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SANTE_DATA_DIR": str(data_dir), "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'bench'}"}
    factory = "sante.api.factory:app" if audit else "_app_without_audit:app"
    code = (
        "import uvicorn\n"
        f"uvicorn.run('{factory}', host='127.0.0.1', port={port}, workers={workers}, "
        "log_level='warning', factory=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def run_load(port: int, clients: int, seconds: float, max_requests: int, token: str
                   ) -> tuple[list[float], int, int]:
    import httpx

    base = f"http://127.0.0.1:{port}/fhir"
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=clients),
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.get("/Patient?_count=200&_elements=id")
        patients = [e["resource"]["id"] for e in r.json().get("entry", [])]
        r = await http.get("/Observation?_count=200&_elements=id")
        observations = [e["resource"]["id"] for e in r.json().get("entry", [])]
        if not patients or not observations:
            raise RuntimeError("no seeded data visible through the API")
        latencies: list[float] = []
        errors = 0
        sent = 0
        stop_at = time.monotonic() + seconds
        rnd = random.Random(7)

        async def one_client() -> None:
            nonlocal errors, sent
            while time.monotonic() < stop_at and sent < max_requests:
                sent += 1
                roll = rnd.random()
                t0 = time.perf_counter()
                if roll < 0.5:
                    resp = await http.get(f"/Observation/{rnd.choice(observations)}")
                elif roll < 0.8:
                    resp = await http.get(f"/Observation?subject=Patient/{rnd.choice(patients)}&_count=10")
                elif roll < 0.9:
                    resp = await http.get(f"/Patient?name={rnd.choice(['a', 'b', 'm', 'jo'])}&_count=10")
                else:
                    resp = await http.post("/Observation", json={
                        "resourceType": "Observation", "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                        "subject": {"reference": f"Patient/{rnd.choice(patients)}"},
                        "effectiveDateTime": "2024-05-01T08:00:00Z",
                        "valueQuantity": {"value": rnd.randint(50, 120), "unit": "/min",
                                          "system": "http://unitsofmeasure.org", "code": "/min"}})
                latencies.append((time.perf_counter() - t0) * 1000)
                if resp.status_code >= 400:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return latencies, errors, int(len(latencies) / elapsed)


WRK_SCRIPT = """
local patients = {%s}
local observations = {%s}
local names = {"a", "b", "m", "jo"}
math.randomseed(7)
wrk.headers["Authorization"] = "Bearer %s"
local body = '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",' ..
  '"code":"8867-4"}]},"subject":{"reference":"Patient/%%s"},"effectiveDateTime":"2024-05-01T08:00:00Z",' ..
  '"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}'
request = function()
  local roll = math.random()
  if roll < 0.5 then
    return wrk.format("GET", "/fhir/Observation/" .. observations[math.random(#observations)])
  elseif roll < 0.8 then
    return wrk.format("GET", "/fhir/Observation?subject=Patient/" .. patients[math.random(#patients)] .. "&_count=10")
  elseif roll < 0.9 then
    return wrk.format("GET", "/fhir/Patient?name=" .. names[math.random(#names)] .. "&_count=10")
  else
    local p = patients[math.random(#patients)]
    -- wrk.format does not add wrk.headers to a headers table of its own: the token goes in explicitly
    return wrk.format("POST", "/fhir/Observation", {["Content-Type"] = "application/fhir+json",
                                                     ["Authorization"] = wrk.headers["Authorization"]},
                      string.format(body, p))
  end
end
errors = 0
response = function(status, headers, body)
  if status >= 400 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("WRK %%d %%f %%f %%f %%f %%d %%d\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, errors))
end
"""


def run_wrk(port: int, clients: int, seconds: float, workdir: Path, token: str
            ) -> tuple[int, float, float, float, int]:
    """(req/s, p50, p95, p99 ms, errors) measured by wrk running the mix."""
    import httpx

    base = f"http://127.0.0.1:{port}/fhir"
    auth = {"Authorization": f"Bearer {token}"}
    patients = [e["resource"]["id"] for e in
                httpx.get(f"{base}/Patient?_count=200&_elements=id", headers=auth).json()["entry"]]
    observations = [e["resource"]["id"] for e in
                    httpx.get(f"{base}/Observation?_count=200&_elements=id", headers=auth).json()["entry"]]
    script = workdir / "mix.lua"
    quote = lambda ids: ", ".join(f'"{i}"' for i in ids)  # noqa: E731
    script.write_text(WRK_SCRIPT % (quote(patients), quote(observations), token))
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", str(script),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=seconds + 60)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("WRK "))
    n, duration, p50, p95, p99, socket_errors, status_errors = line.split()[1:]
    return (int(int(n) / float(duration)), float(p50), float(p95), float(p99),
            int(socket_errors) + int(status_errors))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bundles", type=int, default=10)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=4, help="alternating audit-off/on rounds (default 4)")
    ap.add_argument("--python-client", action="store_true", help="use the httpx generator even if wrk exists")
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="sante-http-"))
    runs: dict[bool, list[tuple[int, float, float, float, int]]] = {False: [], True: []}
    generator = "wrk" if shutil.which("wrk") and not args.python_client else "httpx (Python)"
    try:
        token = seed(data_dir, args.bundles)
        # Off and on alternate, --rounds times: drift of the machine (other load, a growing database) falls on
        # both sides alike.
        for audit in [False, True] * args.rounds:
            port = free_port()
            proc = start_server(data_dir, port, args.workers, audit=audit)
            try:
                if generator == "wrk":
                    runs[audit].append(run_wrk(port, args.clients, args.seconds, data_dir, token))
                else:
                    latencies, errors, rate = asyncio.run(
                        run_load(port, args.clients, args.seconds, args.max_requests, token))
                    runs[audit].append((rate, *(pct(latencies, p) for p in (0.5, 0.95, 0.99)), errors))
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    pairs = []
    for n, (off, on) in enumerate(zip(runs[False], runs[True], strict=True), start=1):
        for audit, (rate, p50, p95, p99, errors) in ((False, off), (True, on)):
            print(f"round {n}, load generator {generator}: {args.clients} clients, {args.workers} server workers, "
                  f"audit {'on' if audit else 'off'}: {rate:,} req/s, p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                  f"p99 {p99:.1f} ms, {errors} errors")
        pairs.append(100 * (1 - on[0] / off[0]) if off[0] else 100.0)
    mean = {a: sum(r[0] for r in runs[a]) / len(runs[a]) for a in (False, True)}
    rate = int(mean[True])
    p50, p95, p99 = (max(r[i] for r in runs[True]) for i in (1, 2, 3))  # the worst round's percentiles
    errors = sum(r[4] for a in (False, True) for r in runs[a])
    # Each round's audit-on run follows its audit-off run: the median of the rounds' overheads is robust to the
    # machine's drift (other work starting or stopping), which the ratio of the means is not.
    overhead = statistics.median(pairs)
    print(f"audit overhead per round: {', '.join(f'{p:.1f}%' for p in pairs)}; ratio of the means "
          f"{100 * (1 - mean[True] / mean[False]) if mean[False] else 100.0:.1f}%")
    ok = rate >= 1500 and errors == 0 and overhead <= 10
    print(f"http: {rate:,} req/s, p50/p95/p99 {p50:.0f}/{p95:.0f}/{p99:.0f} ms, {errors} errors, audit overhead "
          f"{overhead:.1f}% (goal >= 1,500 req/s, 0 errors, <= 10%): {'ok' if ok else 'short'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
