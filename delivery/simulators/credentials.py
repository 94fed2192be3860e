"""Demo credentials for the provider simulators, generated at run time.

Nothing here is committed: on first use we create, under ``directory`` (default
``var/simulators``, git-ignored), a small local CA plus a TLS certificate for
localhost/127.0.0.1/::1 signed by it, an APNs ``.p8`` EC P-256 signing key with a
key id and team id, and an FCM service-account JSON (RSA key). Later runs reuse the
files, so a seeded demo project keeps working across simulator restarts.

A CA + leaf (rather than one self-signed leaf) keeps strict X.509 verification
happy (Python 3.13 turns on VERIFY_X509_STRICT); senders trust it via ``ca_file``.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEMO_TOPIC = "com.herald.demo"
DEMO_FCM_PROJECT_ID = "herald-demo"
# google-auth always signs its grant for this audience, whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105

CA_CERT_FILE = "simulator-ca.pem"
CA_KEY_FILE = "simulator-ca-key.pem"
TLS_CERT_FILE = "simulator-tls-cert.pem"
TLS_KEY_FILE = "simulator-tls-key.pem"
APNS_KEY_FILE = "apns-auth-key.p8"
APNS_META_FILE = "apns-key.json"
FCM_SERVICE_ACCOUNT_FILE = "fcm-service-account.json"


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """Paths and values a seeded demo project (and the simulators) need."""

    directory: Path
    ca_file: Path  # trust this (ApnsConfig/FcmConfig.ca_file)
    ca_key_file: Path  # signs APNs client certificates (certificate-auth demo/tests)
    tls_cert_file: Path  # served by the simulators
    tls_key_file: Path
    apns_key_file: Path
    team_id: str
    key_id: str
    auth_key_pem: str
    topic: str
    fcm_service_account_file: Path
    service_account_info: dict[str, Any]

    @property
    def apns_public_key_pem(self) -> str:
        key = serialization.load_pem_private_key(self.auth_key_pem.encode(), password=None)
        return (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @property
    def fcm_public_key_pem(self) -> str:
        key = serialization.load_pem_private_key(
            str(self.service_account_info["private_key"]).encode(), password=None
        )
        return (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by the owner only, atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _pem_private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _generate_tls(directory: Path) -> None:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Herald simulators local CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(directory / CA_KEY_FILE, _pem_private(ca_key))
    _write_private(directory / TLS_KEY_FILE, _pem_private(leaf_key))
    (directory / TLS_CERT_FILE).write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    # Written last: its presence marks the TLS set as complete.
    (directory / CA_CERT_FILE).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))


def _generate_apns(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(directory / APNS_KEY_FILE, _pem_private(key))
    meta = {
        # Apple's key ids and team ids are 10 upper-case alphanumerics.
        "key_id": secrets.token_hex(5).upper(),
        "team_id": secrets.token_hex(5).upper(),
        "topic": DEMO_TOPIC,
    }
    (directory / APNS_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _generate_fcm(directory: Path, token_uri: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info = {
        "type": "service_account",
        "project_id": DEMO_FCM_PROJECT_ID,
        "private_key_id": secrets.token_hex(20),
        "private_key": _pem_private(key).decode(),
        "client_email": f"herald-sender@{DEMO_FCM_PROJECT_ID}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    _write_private(directory / FCM_SERVICE_ACCOUNT_FILE, json.dumps(info, indent=2).encode())


def ensure_demo_credentials(
    directory: Path, *, fcm_base_url: str = "https://127.0.0.1:2198"
) -> DemoCredentials:
    """Create the demo credentials under ``directory`` unless already there.

    ``fcm_base_url`` is where the FCM simulator listens; the service account's
    ``token_uri`` is pointed at its ``/token`` (rewritten if the port changed, the
    keys themselves are kept).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Two processes starting at once (web + simulators, parallel test runs) must not
    # both generate: the loser would overwrite keys the winner already handed out.
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(directory, fcm_base_url.rstrip("/") + "/token")


def _ensure_locked(directory: Path, token_uri: str) -> DemoCredentials:
    if not (directory / CA_CERT_FILE).exists():
        _generate_tls(directory)
    if not (directory / APNS_META_FILE).exists() or not (directory / APNS_KEY_FILE).exists():
        _generate_apns(directory)
    account_path = directory / FCM_SERVICE_ACCOUNT_FILE
    if not account_path.exists():
        _generate_fcm(directory, token_uri)
    info: dict[str, Any] = json.loads(account_path.read_text())
    if info.get("token_uri") != token_uri:
        info["token_uri"] = token_uri
        _write_private(account_path, json.dumps(info, indent=2).encode())
    meta = json.loads((directory / APNS_META_FILE).read_text())
    return DemoCredentials(
        directory=directory.resolve(),
        ca_file=(directory / CA_CERT_FILE).resolve(),
        ca_key_file=(directory / CA_KEY_FILE).resolve(),
        tls_cert_file=(directory / TLS_CERT_FILE).resolve(),
        tls_key_file=(directory / TLS_KEY_FILE).resolve(),
        apns_key_file=(directory / APNS_KEY_FILE).resolve(),
        team_id=str(meta["team_id"]),
        key_id=str(meta["key_id"]),
        auth_key_pem=(directory / APNS_KEY_FILE).read_text(),
        topic=str(meta.get("topic", DEMO_TOPIC)),
        fcm_service_account_file=account_path.resolve(),
        service_account_info=info,
    )


def issue_apns_client_certificate(credentials: DemoCredentials, *, topic: str = "") -> str:
    """PEM (certificate + key) for APNs certificate auth against the simulator,
    signed by the demo CA; its UID carries the topic like Apple's certificates."""
    ca_key = serialization.load_pem_private_key(credentials.ca_key_file.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(credentials.ca_file.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    topic = topic or credentials.topic
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.USER_ID, topic),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Apple Push Services: {topic}"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode() + _pem_private(key).decode()
