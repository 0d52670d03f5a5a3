"""Compact JWS (RFC 7515) with ES256 and a detached payload, as FHIR's Signature.data with sigFormat
application/jose expects: `BASE64URL(header)..BASE64URL(signature)`, the payload (the signed content) left
out and supplied again when verifying.

The protected header is `{"alg":"ES256","x5c":[...]}` plus any extra fields; x5c carries the signer's
certificate chain, leaf first, as standard base64 DER (RFC 7515 §4.1.6). Only ES256 is accepted when
verifying (no algorithm negotiation, so no `none` or HMAC confusion).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ALG = "ES256"


class JwsError(ValueError):
    """A JWS that is malformed or whose signature does not verify."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise JwsError(f"not base64url: {e}") from None


def sign_detached(payload: bytes, key: ec.EllipticCurvePrivateKey, chain: list[x509.Certificate],
                  extra_header: dict[str, Any] | None = None) -> str:
    """The compact JWS over payload, with the payload detached."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise JwsError("ES256 needs an ECDSA P-256 key")
    header = {**(extra_header or {}), "alg": ALG,
              "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in chain]}
    protected = b64url(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))
    der = key.sign(f"{protected}.{b64url(payload)}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{protected}..{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def parse(jws: str) -> tuple[dict[str, Any], list[x509.Certificate]]:
    """(protected header, certificate chain from x5c) of a detached compact JWS, without verifying it."""
    parts = jws.strip().split(".")
    if len(parts) != 3:
        raise JwsError("a compact JWS has three dot-separated parts")
    if parts[1]:
        raise JwsError("the JWS carries its payload: a detached payload was expected")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
    except orjson.JSONDecodeError as e:
        raise JwsError(f"the JWS header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise JwsError("the JWS header is not a JSON object")
    if header.get("alg") != ALG:
        raise JwsError(f"the JWS algorithm must be {ALG}, not {header.get('alg')!r}")
    if header.get("crit"):
        raise JwsError(f"the JWS marks header fields critical that this verifier does not know: {header['crit']}")
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
        raise JwsError("the JWS header has no x5c certificate chain")
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
    except (binascii.Error, ValueError) as e:
        raise JwsError(f"the x5c certificates cannot be read: {e}") from None
    return header, chain


def verify_detached(jws: str, payload: bytes) -> tuple[dict[str, Any], list[x509.Certificate]]:
    """Check the JWS over payload with the key of its x5c leaf certificate; (header, chain) when it verifies.

    Whether the chain is trusted is a separate question (sante.auth.ca.chain_problems)."""
    header, chain = parse(jws)
    key = chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise JwsError("the signer's certificate does not hold an ECDSA P-256 key")
    protected, _, sig = jws.strip().split(".")
    raw = b64url_decode(sig)
    if len(raw) != 64:
        raise JwsError("an ES256 signature is 64 bytes")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, f"{protected}.{b64url(payload)}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise JwsError("the signature does not match the content") from None
    return header, chain


__all__ = ["ALG", "JwsError", "parse", "sign_detached", "verify_detached"]
