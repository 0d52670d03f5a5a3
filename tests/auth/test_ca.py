"""The hospital CA: creation and import, practitioners' certificates, key files, chain checks; compact JWS."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sante.anomaly import Anomaly, Category
from sante.auth import ca
from sante.auth.jws import JwsError, b64url, sign_detached, verify_detached


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch):
    monkeypatch.delenv(ca.PASSPHRASE_ENV, raising=False)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def category(excinfo) -> Category:
    return excinfo.value.category


def test_init_creates_a_self_signed_ca_with_private_files(tmp_path):
    d = tmp_path / "ca"
    info = ca.init_ca(d, "Bệnh viện Đa khoa Sante")
    assert info.subject == "CN=Bệnh viện Đa khoa Sante" and not info.encrypted
    assert mode(d) == 0o700 and mode(d / "ca.key") == 0o600
    cert = ca.ca_certificates(d)[0]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(cert)
    assert ca.hospital_ca(d) == cert and ca.fingerprint(cert) == info.fingerprint
    with pytest.raises(Anomaly) as e:
        ca.init_ca(d, "again")
    assert category(e) == Category.CONFLICT and "never replaced" in e.value.message


def test_issue_names_the_practitioner_and_chains_to_the_ca(tmp_path):
    d = tmp_path / "ca"
    ca.init_ca(d)
    key, cert = ca.issue(d, "Practitioner/p-1", "BS. Trần Văn Bình")
    assert ca.practitioner_of(cert) == "Practitioner/p-1" and ca.common_name(cert) == "BS. Trần Văn Bình"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:sante:Practitioner/p-1"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"

    loaded, chain = ca.load_signer(d, "urn:sante:Practitioner/p-1")
    assert chain[0] == cert and chain[1] == ca.hospital_ca(d)
    assert ca.chain_problems(chain, ca.hospital_ca(d), datetime.now(UTC)) == []
    assert ca.chain_problems([cert], ca.hospital_ca(d), datetime.now(UTC)) == []  # the CA need not be in the chain
    key_file = d / "practitioners" / "Practitioner-p-1.key"
    assert mode(key_file) == 0o600 and b"ENCRYPTED" not in key_file.read_bytes()
    assert loaded.private_numbers() == key.private_numbers()


@pytest.mark.parametrize("ref", ["Patient/1", "Practitioner/", "Practitioner/a b", ""])
def test_issue_refuses_what_is_not_a_practitioner(tmp_path, ref):
    ca.init_ca(tmp_path)
    with pytest.raises(Anomaly) as e:
        ca.issue(tmp_path, ref, "X")
    assert category(e) == Category.INCORRECT


def test_issue_and_load_need_a_ca_and_a_key(tmp_path):
    with pytest.raises(Anomaly) as e:
        ca.issue(tmp_path / "ca", "Practitioner/1", "X")
    assert category(e) == Category.NOT_FOUND and "sante ca init" in e.value.message
    ca.init_ca(tmp_path / "ca")
    with pytest.raises(Anomaly) as e:
        ca.load_signer(tmp_path / "ca", "Practitioner/1")
    assert category(e) == Category.NOT_FOUND and "sante ca issue" in e.value.message


def test_passphrase_encrypts_keys_and_is_needed_to_use_them(tmp_path, monkeypatch):
    monkeypatch.setenv(ca.PASSPHRASE_ENV, "correct horse battery staple")
    d = tmp_path / "ca"
    assert ca.init_ca(d).encrypted
    ca.issue(d, "Practitioner/7", "BS. An")
    assert b"ENCRYPTED" in (d / "ca.key").read_bytes()
    assert b"ENCRYPTED" in (d / "practitioners" / "Practitioner-7.key").read_bytes()
    ca.load_signer(d, "Practitioner/7")

    monkeypatch.setenv(ca.PASSPHRASE_ENV, "wrong")
    with pytest.raises(Anomaly) as e:
        ca.load_signer(d, "Practitioner/7")
    assert category(e) == Category.FORBIDDEN
    monkeypatch.delenv(ca.PASSPHRASE_ENV)
    with pytest.raises(Anomaly) as e:
        ca.issue(d, "Practitioner/8", "BS. Bình")
    assert category(e) == Category.FORBIDDEN and ca.PASSPHRASE_ENV in e.value.message
    # Verification needs no passphrase: certificates are public.
    assert ca.hospital_ca(d) is not None


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(*certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _ca_cert(name: str, key, issuer_name: str | None = None, issuer_key=None, *, is_ca: bool = True):
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]) if issuer_name else subject
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA256())
    )


def test_import_an_intermediate_under_a_national_root(tmp_path):
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _ca_cert("Bộ Y tế Root CA", root_key)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca_cert("Sante Hospital CA", inter_key, "Bộ Y tế Root CA", root_key)
    d = tmp_path / "ca"
    info = ca.import_ca(d, _pem(inter, root), _pem_key(inter_key))
    assert info.subject == "CN=Sante Hospital CA" and mode(d / "ca.key") == 0o600
    _, cert = ca.issue(d, "Practitioner/9", "BS. Chín")
    _, chain = ca.load_signer(d, "Practitioner/9")
    assert [c.subject for c in chain] == [cert.subject, inter.subject, root.subject]
    # The anchor is the hospital CA: the root above it is carried but not needed.
    assert ca.chain_problems(chain, ca.hospital_ca(d), datetime.now(UTC)) == []
    with pytest.raises(Anomaly) as e:
        ca.import_ca(d, _pem(inter), _pem_key(inter_key))
    assert category(e) == Category.CONFLICT


def test_import_refuses_a_wrong_key_a_leaf_or_a_bad_order(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_cert("A CA", key)
    other = ec.generate_private_key(ec.SECP256R1())
    for cert_pem, key_pem, needle in [
        (_pem(cert), _pem_key(other), "does not belong"),
        (_pem(_ca_cert("leaf", key, is_ca=False)), _pem_key(key), "not a CA certificate"),
        (_pem(cert, _ca_cert("unrelated", other)), _pem_key(key), "its issuers"),
        (b"not a pem", _pem_key(key), "not a PEM certificate"),
        (_pem(cert), b"not a key", "not a PEM private key"),
    ]:
        with pytest.raises(Anomaly) as e:
            ca.import_ca(tmp_path / "ca", cert_pem, key_pem)
        assert category(e) == Category.INCORRECT and needle in e.value.message, e.value.message
    assert not ca.ca_exists(tmp_path / "ca")


def test_a_certificate_from_another_ca_is_not_trusted(tmp_path):
    ca.init_ca(tmp_path / "ours", "Sante Hospital CA")
    ca.init_ca(tmp_path / "theirs", "Sante Hospital CA")  # same name, different key
    ca.issue(tmp_path / "theirs", "Practitioner/1", "Mallory")
    _, chain = ca.load_signer(tmp_path / "theirs", "Practitioner/1")
    problems = ca.chain_problems(chain, ca.hospital_ca(tmp_path / "ours"), datetime.now(UTC))
    assert problems and "not issued by the hospital CA" in problems[0]
    assert ca.chain_problems(chain, None, datetime.now(UTC)) == ["no hospital CA is configured to verify against"]
    # A CA certificate presented as the signer's is refused too.
    assert "CA certificate" in ca.chain_problems(chain[1:], ca.hospital_ca(tmp_path / "theirs"),
                                                 datetime.now(UTC))[0]


def test_chain_checks_validity_at_the_signing_time(tmp_path):
    ca.init_ca(tmp_path)
    _, cert = ca.issue(tmp_path, "Practitioner/1", "BS. An", days=1)
    anchor = ca.hospital_ca(tmp_path)
    assert ca.chain_problems([cert], anchor, datetime.now(UTC)) == []
    later = ca.chain_problems([cert], anchor, datetime.now(UTC) + timedelta(days=3))
    assert later and "was not valid at" in later[0]


def test_jws_round_trip_and_tampering(tmp_path):
    ca.init_ca(tmp_path)
    ca.issue(tmp_path, "Practitioner/1", "BS. An")
    key, chain = ca.load_signer(tmp_path, "Practitioner/1")
    payload = orjson.dumps({"resourceType": "DiagnosticReport", "id": "1"}, option=orjson.OPT_SORT_KEYS)
    jws = sign_detached(payload, key, chain, {"sigT": "2024-05-01T00:00:00+00:00"})
    head, empty, sig = jws.split(".")
    assert empty == ""  # detached payload
    header, certs = verify_detached(jws, payload)
    assert header["alg"] == "ES256" and header["sigT"].startswith("2024") and certs[0] == chain[0]
    assert base64.b64decode(header["x5c"][0]) == chain[0].public_bytes(serialization.Encoding.DER)

    with pytest.raises(JwsError, match="does not match"):
        verify_detached(jws, payload.replace(b'"1"', b'"2"'))
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(JwsError):
        verify_detached(f"{head}..{flipped}", payload)
    none_header = b64url(orjson.dumps({**header, "alg": "none"}))
    with pytest.raises(JwsError, match="ES256"):
        verify_detached(f"{none_header}..", payload)
    with pytest.raises(JwsError, match="detached"):
        verify_detached(f"{head}.{b64url(payload)}.{sig}", payload)
    crit = b64url(orjson.dumps({**header, "crit": ["b64"], "b64": False}))
    with pytest.raises(JwsError, match="critical"):
        verify_detached(f"{crit}..{sig}", payload)
