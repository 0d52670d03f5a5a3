#!/usr/bin/env node
// Times fhirpath.js (npm `fhirpath`, R4 model) on a list of FHIRPath expressions, for bench/fhirpath_speed.py.
//
// usage: node fhirpath_time.js [items.json] [--target-ms 2] [--repeats 5] [--out results.json]
//   items (a file, or stdin when no file is given): a JSON list of
//     {"id": any, "expression": "Patient.name.given", "inputfile": "/path/to/resource.json" | null}
//   (a null inputfile evaluates against an empty object, as the Python side does).
// Each expression is compiled once, outside the timed loop; evaluations before timing check that it runs and
// warm the JIT, then the count per run is raised until a run takes about target-ms, and the best of `repeats` runs is kept.
// Output on stdout, or in the --out file (then stdout only carries what trace() prints): {"engine": "fhirpath.js", "version": ..., "results": [{"id", "us", "n", "error"}]}, where
// `us` is microseconds per evaluation (null with an `error` message when compiling or evaluating failed).
'use strict';

const fs = require('fs');
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');

function parseArgs(argv) {
  const opts = { file: null, out: null, targetMs: 2, repeats: 5 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--target-ms') opts.targetMs = Number(argv[++i]);
    else if (argv[i] === '--repeats') opts.repeats = Number(argv[++i]);
    else if (argv[i] === '--out') opts.out = argv[++i];
    else opts.file = argv[i];
  }
  return opts;
}

function loop(fn, resource, n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(resource);
  return Number(process.hrtime.bigint() - t0);
}

function timeOne(fn, resource, targetNs, repeats) {
  // Like Python's timeit.autorange: grow n (1, 2, 5, 10, 20, 50, ...) until a run is a fifth of the target.
  let n = 1;
  let t = loop(fn, resource, n);
  for (let k = 0; t < targetNs / 5; k++) {
    n = [2, 5, 10][k % 3] * 10 ** Math.floor(k / 3);
    t = loop(fn, resource, n);
  }
  n = Math.max(1, Math.round((n * targetNs) / Math.max(t, 1)));
  let best = Infinity;
  for (let r = 0; r < repeats; r++) best = Math.min(best, loop(fn, resource, n));
  return { us: best / n / 1000, n };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const raw = opts.file ? fs.readFileSync(opts.file, 'utf8') : fs.readFileSync(0, 'utf8');
  const items = JSON.parse(raw);
  const inputs = new Map();
  const load = (file) => {
    if (!file) return {};
    if (!inputs.has(file)) inputs.set(file, JSON.parse(fs.readFileSync(file, 'utf8')));
    return inputs.get(file);
  };
  const targetNs = opts.targetMs * 1e6;
  // Compile everything and evaluate each expression once (errors are recorded, not timed); then a second pass
  // over all of them so that the engine's shared code is warmed by the JIT before any expression is timed.
  const compiled = items.map((item) => {
    const resource = load(item.inputfile);
    try {
      const fn = fhirpath.compile(item.expression, r4);
      const first = fn(resource);
      if (first && typeof first.then === 'function') {
        first.catch(() => {});
        throw new Error('asynchronous result (not timed)');
      }
      return { item, resource, fn, error: null };
    } catch (e) {
      return { item, resource, fn: null, error: String((e && e.message) || e).slice(0, 200) };
    }
  });
  for (const c of compiled) if (c.fn) c.fn(c.resource);
  const results = compiled.map(({ item, resource, fn, error }) => {
    if (!fn) return { id: item.id, us: null, n: 0, error };
    try {
      const { us, n } = timeOne(fn, resource, targetNs, opts.repeats);
      return { id: item.id, us, n, error: null };
    } catch (e) {
      return { id: item.id, us: null, n: 0, error: String((e && e.message) || e).slice(0, 200) };
    }
  });
  const version = require('fhirpath/package.json').version;
  const report = JSON.stringify({ engine: 'fhirpath.js', version, node: process.version, results });
  if (opts.out) fs.writeFileSync(opts.out, report);
  else process.stdout.write(report);
}

main();
