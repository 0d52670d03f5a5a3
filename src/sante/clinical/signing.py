"""Signed records: a practitioner signs one version of a Composition, DiagnosticReport or MedicationRequest.

A signature is a Provenance (R4) whose target is the versioned reference of the signed version
(`DiagnosticReport/1/_history/2`) and whose `signature` holds a JWS (RFC 7515, ES256, detached payload)
made with the practitioner's key; the JWS header's x5c carries the practitioner's certificate chain, issued
by the hospital CA (sante.auth.ca).

What is signed — the canonical JSON of the version (`canonical`):
    the resource exactly as stored for that version, parsed and serialised again by orjson with
    OPT_SORT_KEYS: object keys sorted (recursively, by code point: FHIR's keys are ASCII), no whitespace,
    strings as UTF-8 without escaping beyond JSON's, numbers as orjson writes them (shortest round-trip).
    Unlike FHIR's canonical variants that drop them, `meta.versionId`, `meta.lastUpdated` and the narrative
    (`text`) are kept: the signature binds one exact version, as the practitioner saw it.

Signed versions are immutable: a change to a resource whose current version is signed needs a reason
(`check_update_allowed`); `correct` writes the new version together with a Provenance (activity UPDATE,
the reason, the previous version as a `revision` entity). Every version stays readable (vread): the store
keeps them all.

Every function takes a Repository (it opens its own transaction) or a Transaction (it works inside the
caller's, so a check and the write it guards are atomic).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from sante.anomaly import Anomaly, Category, incorrect
from sante.auth import ca
from sante.auth.jws import JwsError, parse, sign_detached, verify_detached
from sante.store import Repository, StoredResource, Transaction
from sante.store.repository import now_instant

SIGNABLE = ("Composition", "DiagnosticReport", "MedicationRequest")
SIG_FORMAT = "application/jose"
TARGET_FORMAT = "application/fhir+json"
AUTHOR_SIGNATURE = {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1",
                    "display": "Author's Signature"}
ACTIVITY_SIGN = {"system": "http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion", "code": "LA",
                 "display": "legally authenticated"}
ACTIVITY_UPDATE = {"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE",
                   "display": "revise"}
AGENT_AUTHOR = {"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author",
                "display": "Author"}
VERSIONED_RE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})/_history/(\d+)$")


# -- what is signed ---------------------------------------------------------------------------------------------
def canonical(resource: dict[str, Any]) -> bytes:
    """The canonical JSON of a resource: keys sorted, no whitespace (see the module's docstring)."""
    return orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)


def canonical_version(stored: StoredResource) -> bytes:
    if stored.content is None:
        raise Anomaly(Category.DELETED, f"{stored.type}/{stored.id} version {stored.version} is a deletion")
    return canonical(orjson.loads(stored.content))


def versioned(rtype: str, rid: str, version: int) -> str:
    return f"{rtype}/{rid}/_history/{version}"


def check_signable(rtype: str) -> None:
    if rtype not in SIGNABLE:
        raise incorrect(f"{rtype} cannot be signed: only {', '.join(SIGNABLE)} can", "type")


# -- transactions -----------------------------------------------------------------------------------------------
Source = Repository | Transaction


@contextmanager
def _reading(src: Source) -> Iterator[Transaction]:
    if isinstance(src, Transaction):
        yield src
    else:
        with src.reader() as tx:
            yield tx


@contextmanager
def _writing(src: Source) -> Iterator[Transaction]:
    if isinstance(src, Transaction):
        yield src
    else:
        with src.transaction() as tx:
            yield tx


def _provenances_for(tx: Transaction, rtype: str, rid: str) -> list[dict[str, Any]]:
    """Every current Provenance whose target is rtype/rid (any version), oldest first."""
    from sante.store.search import decode_cursor, parse_search, run_search

    req = parse_search("Provenance", [("target", f"{rtype}/{rid}"), ("_count", "1000")])
    found: list[dict[str, Any]] = []
    while True:
        result = run_search(tx, req)
        found += [m.resource for m in result.matches if m.resource is not None]
        if not result.next_cursor:
            break
        req.cursor = decode_cursor(result.next_cursor)
    found.sort(key=lambda p: (p.get("recorded", ""), p.get("id", "")))
    return found


def _targets(prov: dict[str, Any]) -> list[str]:
    return [t.get("reference", "") for t in prov.get("target", []) if isinstance(t, dict)]


def _jose_signature(prov: dict[str, Any]) -> dict[str, Any] | None:
    return next((s for s in prov.get("signature", []) if isinstance(s, dict) and s.get("sigFormat") == SIG_FORMAT),
                None)


def _signatures_of(tx: Transaction, rtype: str, rid: str, version: int) -> list[dict[str, Any]]:
    """The Provenances that carry a signature of rtype/rid at that version."""
    ref = versioned(rtype, rid, version)
    return [p for p in _provenances_for(tx, rtype, rid) if ref in _targets(p) and p.get("signature")]


def _is_update(prov: dict[str, Any]) -> bool:
    return any(c.get("code") == "UPDATE" for c in (prov.get("activity") or {}).get("coding", []))


def _practitioner_display(tx: Transaction, ref: str, fallback: str) -> str:
    practitioner = tx.read("Practitioner", ref.split("/", 1)[1]).resource or {}
    for name in practitioner.get("name", []):
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return fallback


# -- signing ----------------------------------------------------------------------------------------------------
def sign(src: Source, rtype: str, rid: str, practitioner_ref: str, key: Any, cert_chain: list[Any]
         ) -> dict[str, Any]:
    """Sign the current version of rtype/rid as practitioner_ref; the stored Provenance is returned.

    The key and chain come from sante.auth.ca.load_signer; the certificate must have been issued to that
    practitioner and be valid now, and the Practitioner must exist. A practitioner signs a version once."""
    check_signable(rtype)
    ref = ca.practitioner_reference(practitioner_ref)
    if not cert_chain:
        raise incorrect("signing needs the practitioner's certificate chain")
    leaf = cert_chain[0]
    owner = ca.practitioner_of(leaf)
    if owner != ref:
        raise Anomaly(Category.FORBIDDEN, f"the signing certificate was issued to {owner or 'nobody Sante knows'}, "
                                          f"not {ref}")
    when = now_instant()
    at = datetime.fromisoformat(when)
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        raise Anomaly(Category.FORBIDDEN, f"{ref}'s signing certificate is not valid now (valid "
                                          f"{leaf.not_valid_before_utc:%Y-%m-%d} to {leaf.not_valid_after_utc:%Y-%m-%d})"
                                          ": issue a new one with `sante ca issue`")
    with _writing(src) as tx:
        current = tx.read(rtype, rid)
        display = _practitioner_display(tx, ref, ca.common_name(leaf))
        target = versioned(rtype, rid, current.version)
        for prov in _signatures_of(tx, rtype, rid, current.version):
            if any((s.get("who") or {}).get("reference") == ref for s in prov.get("signature", [])):
                raise Anomaly(Category.CONFLICT, f"{ref} already signed {target} (Provenance/{prov.get('id')})")
        try:
            jws = sign_detached(canonical_version(current), key, cert_chain, {"sigT": when})
        except JwsError as e:
            raise incorrect(f"cannot sign: {e}") from None
        who = {"reference": ref, "display": display}
        provenance = {
            "resourceType": "Provenance",
            "target": [{"reference": target}],
            "recorded": when,
            "activity": {"coding": [ACTIVITY_SIGN]},
            "agent": [{"type": {"coding": [AGENT_AUTHOR]}, "who": who}],
            "signature": [{
                "type": [AUTHOR_SIGNATURE],
                "when": when,
                "who": who,
                "targetFormat": TARGET_FORMAT,
                "sigFormat": SIG_FORMAT,
                "data": base64.b64encode(jws.encode("ascii")).decode("ascii"),
            }],
        }
        stored = tx.create(provenance)
        return stored.resource or {}


def is_signed(src: Source, rtype: str, rid: str, version: int) -> bool:
    """Whether some Provenance carries a signature of that version."""
    if rtype not in SIGNABLE:
        return False
    with _reading(src) as tx:
        return bool(_signatures_of(tx, rtype, rid, version))


def signatures(src: Source, rtype: str, rid: str) -> list[dict[str, Any]]:
    """Every signature Provenance of any version of rtype/rid, oldest first."""
    with _reading(src) as tx:
        return [p for p in _provenances_for(tx, rtype, rid) if p.get("signature")]


# -- immutability -----------------------------------------------------------------------------------------------
def check_update_allowed(src: Source, rtype: str, rid: str, reason: str | None) -> int | None:
    """Refuse (409) a change to rtype/rid whose current version is signed, unless a reason is given.

    For updates, patches and deletions alike. Returns the signed version number when the current version is
    signed (the caller then records the correction with `record_correction`), None when it is not.
    A Provenance that carries a signature is never changed, reason or not: sign the corrected version instead."""
    if rtype == "Provenance":
        with _reading(src) as tx:
            current = tx.current(rtype, rid)
        if current is not None and not current.deleted and (current.resource or {}).get("signature"):
            raise Anomaly(Category.CONFLICT, f"Provenance/{rid} carries a signature: it is never changed or deleted")
        return None
    if rtype not in SIGNABLE:
        return None
    with _reading(src) as tx:
        current = tx.current(rtype, rid)
        if current is None or current.deleted:
            return None
        signed = _signatures_of(tx, rtype, rid, current.version)
    if not signed:
        return None
    if reason is None or not reason.strip():
        names = ", ".join(f"Provenance/{p.get('id')}" for p in signed)
        raise Anomaly(Category.CONFLICT, f"{rtype}/{rid} version {current.version} is signed ({names}): it cannot be "
                                         "changed; a correction is a new version with a reason",
                      location="X-Provenance")
    return current.version


USERNAME_SYSTEM = "https://sante.health/fhir/sid/username"


def _who(agent: str) -> dict[str, Any]:
    """A Provenance agent: a reference (Practitioner/7), or, for an account linked to no FHIR resource, its
    username as an identifier."""
    rtype, _, rid = agent.partition("/")
    if rid and rtype[:1].isupper() and rtype.isalpha() and "/" not in rid:
        return {"reference": agent}
    return {"identifier": {"system": USERNAME_SYSTEM, "value": agent}, "display": agent}


def record_correction(src: Source, rtype: str, rid: str, new_version: int, previous_version: int, reason: str,
                      agent_ref: str) -> dict[str, Any]:
    """Store the Provenance of a correction: the new version, its reason and who made it, with the previous
    (signed) version as its `revision` entity."""
    if not reason or not reason.strip():
        raise incorrect("a correction needs a reason", "reason")
    with _writing(src) as tx:
        stored = tx.create({
            "resourceType": "Provenance",
            "target": [{"reference": versioned(rtype, rid, new_version)}],
            "recorded": now_instant(),
            "activity": {"coding": [ACTIVITY_UPDATE]},
            "reason": [{"text": reason.strip()}],
            "agent": [{"type": {"coding": [AGENT_AUTHOR]}, "who": _who(agent_ref)}],
            "entity": [{"role": "revision", "what": {"reference": versioned(rtype, rid, previous_version)}}],
        })
        return stored.resource or {}


def correct(src: Source, rtype: str, rid: str, new_body: dict[str, Any], reason: str, practitioner_ref: str, *,
            if_match: int | None = None) -> tuple[StoredResource, dict[str, Any]]:
    """Write a correction of rtype/rid: the new version and its Provenance (activity UPDATE, the reason, the
    previous version as `revision`), in one transaction. Returns (the new version, the Provenance)."""
    check_signable(rtype)
    ref = ca.practitioner_reference(practitioner_ref)
    if not reason or not reason.strip():
        raise incorrect("a correction needs a reason", "reason")
    if not isinstance(new_body, dict) or new_body.get("resourceType") != rtype:
        raise incorrect(f"the correction must be a {rtype}", "resourceType")
    if new_body.get("id") not in (None, rid):
        raise incorrect(f"the correction's id {new_body.get('id')!r} is not {rid!r}", "id")
    with _writing(src) as tx:
        current = tx.read(rtype, rid)
        tx.read("Practitioner", ref.split("/", 1)[1])
        check_update_allowed(tx, rtype, rid, reason)
        stored, _ = tx.update({**new_body, "id": rid}, rid, if_match if if_match is not None else current.version)
        prov = record_correction(tx, rtype, rid, stored.version, current.version, reason, ref)
        return stored, prov


# -- verification -----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class VerificationReport:
    """Who signed what and when, whether the signature and the signer's certificate hold, and whether the
    signed resource has changed since."""

    provenance: str
    target: str | None = None  # the signed version, Type/id/_history/n
    signer: str | None = None  # the Practitioner the certificate was issued to
    signer_name: str | None = None  # the certificate's common name
    claimed_signer: str | None = None  # Provenance.signature.who
    when: str | None = None  # the signing time (from the signed JWS header when present)
    certificate_fingerprint: str | None = None
    signature_valid: bool = False  # the JWS verifies over the stored signed version
    chain_valid: bool = False  # the signer's certificate chains to the hospital CA, valid at `when`
    changed: bool = False  # the resource's current version is not the signed one (or it was deleted)
    signed_version: int | None = None
    current_version: int | None = None  # None when the resource has been deleted
    corrections: list[dict[str, Any]] = field(default_factory=list)  # version, reason, who, recorded
    problems: list[str] = field(default_factory=list)

    @property
    def signer_matches(self) -> bool:
        return self.signer is not None and self.signer == self.claimed_signer

    @property
    def valid(self) -> bool:
        """The signature is genuine: it verifies, its certificate is trusted, the signer is who it claims."""
        return self.signature_valid and self.chain_valid and self.signer_matches

    @property
    def ok(self) -> bool:
        """Valid and the signed version is still the current one."""
        return self.valid and not self.changed

    def to_text(self) -> str:
        lines = [
            f"{self.provenance}: " + ("VALID, unchanged" if self.ok else "VALID, but changed since" if self.valid
                                      else "NOT VALID"),
            f"  signed:      {self.target or '?'}",
            f"  signer:      {self.signer or '?'}" + (f" ({self.signer_name})" if self.signer_name else ""),
            f"  when:        {self.when or '?'}",
            f"  signature:   {'valid' if self.signature_valid else 'INVALID'}",
            f"  certificate: {'issued by the hospital CA' if self.chain_valid else 'NOT TRUSTED'}"
            + (f" (SHA-256 {self.certificate_fingerprint[:16]}…)" if self.certificate_fingerprint else ""),
            "  changed:     " + (("yes: " + (f"now version {self.current_version}" if self.current_version
                                                else "deleted")) if self.changed else "no"),
        ]
        for c in self.corrections:
            lines.append(f"  correction:  version {c['version']} by {c.get('who') or '?'} at {c.get('recorded')}: "
                         f"{c.get('reason')}")
        lines += [f"  problem:     {p}" for p in self.problems]
        return "\n".join(lines)

    def to_parameters(self) -> dict[str, Any]:
        """The report as a FHIR Parameters resource (the $verify-signature answer)."""
        params: list[dict[str, Any]] = [
            {"name": "valid", "valueBoolean": self.valid},
            {"name": "unchanged", "valueBoolean": not self.changed},
            {"name": "signatureValid", "valueBoolean": self.signature_valid},
            {"name": "chainValid", "valueBoolean": self.chain_valid},
            {"name": "provenance", "valueReference": {"reference": self.provenance}},
        ]
        if self.target:
            params.append({"name": "target", "valueReference": {"reference": self.target}})
        if self.signer:
            signer: dict[str, Any] = {"reference": self.signer}
            if self.signer_name:
                signer["display"] = self.signer_name
            params.append({"name": "signer", "valueReference": signer})
        if self.when:
            params.append({"name": "when", "valueInstant": self.when})
        if self.certificate_fingerprint:
            params.append({"name": "certificateSha256", "valueString": self.certificate_fingerprint})
        if self.signed_version is not None:
            params.append({"name": "signedVersion", "valueInteger": self.signed_version})
        if self.current_version is not None:
            params.append({"name": "currentVersion", "valueInteger": self.current_version})
        for c in self.corrections:
            part = [{"name": "version", "valueInteger": c["version"]}, {"name": "reason", "valueString": c["reason"]}]
            if c.get("who"):
                part.append({"name": "who", "valueReference": {"reference": c["who"]}})
            if c.get("recorded"):
                part.append({"name": "recorded", "valueInstant": c["recorded"]})
            params.append({"name": "correction", "part": part})
        issues = [{"severity": "error", "code": "invalid" if "signature" in p or "certif" in p else "processing",
                   "diagnostics": p} for p in self.problems]
        if self.changed:
            state = f"version {self.current_version}" if self.current_version is not None else "deleted"
            issues.append({"severity": "warning", "code": "business-rule",
                           "diagnostics": f"{self.target} has changed since it was signed: now {state}"})
        if not issues:
            issues.append({"severity": "information", "code": "informational",
                           "diagnostics": f"{self.provenance}: valid signature of {self.target} by {self.signer}, "
                                          "unchanged since"})
        params.append({"name": "outcome", "resource": {"resourceType": "OperationOutcome", "issue": issues}})
        return {"resourceType": "Parameters", "parameter": params}


def verify(src: Source, provenance_or_id: dict[str, Any] | str, *, anchor: Any = None, ca_dir: Any = None
           ) -> VerificationReport:
    """Check a signature Provenance (a resource, an id or `Provenance/id`) against the hospital CA.

    The trust anchor is `anchor` (a certificate), else the CA in `ca_dir`, else the CA under the configured
    data dir. A report is always returned for a Provenance that exists; problems are listed in it."""
    if anchor is None:
        if ca_dir is None:
            from sante.settings import Settings

            ca_dir = ca.default_ca_dir(Settings.from_env().data_dir)
        anchor = ca.hospital_ca(ca_dir)
    with _reading(src) as tx:
        if isinstance(provenance_or_id, dict):
            prov = provenance_or_id
        else:
            pid = str(provenance_or_id).strip().removeprefix("Provenance/")
            prov = tx.read("Provenance", pid).resource or {}
        if prov.get("resourceType") != "Provenance":
            raise incorrect("only a Provenance carries a signature to verify")
        report = VerificationReport(provenance=f"Provenance/{prov.get('id', '?')}")
        _verify_into(tx, prov, anchor, report)
    return report


def _verify_into(tx: Transaction, prov: dict[str, Any], anchor: Any, report: VerificationReport) -> None:
    sig = _jose_signature(prov)
    if sig is None:
        report.problems.append("the Provenance has no application/jose signature")
        return
    report.claimed_signer = (sig.get("who") or {}).get("reference")
    report.when = sig.get("when")
    targets = [m for m in map(VERSIONED_RE.match, _targets(prov)) if m]
    if not targets:
        report.problems.append("the Provenance's target is not a versioned reference (Type/id/_history/n)")
        return
    rtype, rid, version = targets[0].group(1), targets[0].group(2), int(targets[0].group(3))
    report.target, report.signed_version = versioned(rtype, rid, version), version

    current = tx.current(rtype, rid)
    report.current_version = current.version if current is not None and not current.deleted else None
    report.changed = current is None or current.deleted or current.version != version
    report.corrections = [
        {"version": int(m.group(3)), "reason": "; ".join(r.get("text", "") for r in p.get("reason", [])),
         "who": ((p.get("agent") or [{}])[0].get("who") or {}).get("reference"), "recorded": p.get("recorded")}
        for p in _provenances_for(tx, rtype, rid) if _is_update(p)
        for m in map(VERSIONED_RE.match, _targets(p)) if m and m.group(1) == rtype and int(m.group(3)) > version
    ]

    try:
        jws = base64.b64decode(sig.get("data", ""), validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        report.problems.append("the signature data is not base64 of a compact JWS")
        return
    try:
        header, chain = parse(jws)
    except JwsError as e:
        report.problems.append(f"the signature cannot be read: {e}")
        return
    leaf = chain[0]
    report.signer, report.signer_name = ca.practitioner_of(leaf), ca.common_name(leaf)
    report.certificate_fingerprint = ca.fingerprint(leaf)
    if isinstance(header.get("sigT"), str):
        if report.when and report.when != header["sigT"]:
            report.problems.append(f"the Provenance says it was signed at {report.when}, the signature says "
                                   f"{header['sigT']}")
        report.when = header["sigT"]
    if not report.signer_matches:
        report.problems.append(f"the certificate was issued to {report.signer or 'no Sante practitioner'}, but the "
                               f"Provenance names {report.claimed_signer or 'nobody'} as the signer")

    try:
        signed = tx.vread(rtype, rid, version)
        verify_detached(jws, canonical_version(signed))
        report.signature_valid = True
    except Anomaly as e:
        report.problems.append(f"the signed version cannot be read: {e.message}")
    except JwsError as e:
        report.problems.append(f"the signature is not valid for {report.target}: {e}")

    try:
        at = datetime.fromisoformat(report.when) if report.when else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        report.problems.append(f"the signing time {report.when!r} is not an instant")
        return
    chain_problems = ca.chain_problems(chain, anchor, at)
    report.problems += chain_problems
    report.chain_valid = not chain_problems


__all__ = [
    "SIGNABLE", "VerificationReport", "canonical", "check_signable", "check_update_allowed", "correct", "is_signed",
    "record_correction", "sign", "signatures", "verify",
]
