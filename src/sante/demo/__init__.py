"""The demo hospital: a synthetic provincial general hospital with its staff, formulary and patients.

`sante demo` seeds it (`sante.demo.seed`) and serves the app. Everything is synthetic and deterministic from a
seed: the facility (`hospital`), Vietnamese people (`people`) and their care (`care`).
"""

DEFAULT_PATIENTS = 300
DEFAULT_SEED = 1
