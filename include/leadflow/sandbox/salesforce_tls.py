"""A self-signed TLS certificate for the local Salesforce sandbox (simple-salesforce only builds
https URLs). Generated at start with `cryptography`; the PEM is what clients pass as `verify`."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CertFiles:
    cert_path: Path  # PEM certificate: give it to clients as `verify=`
    key_path: Path  # PEM private key (server side only)


NOT_BEFORE = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
NO_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)


def make_self_signed(directory: Path, *, name: str = "leadflow-salesforce-sandbox") -> CertFiles:
    """Write `<name>.pem` and `<name>.key` into `directory`, valid for 127.0.0.1, ::1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "leadflow sandbox")])
    san = x509.SubjectAlternativeName([
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("localhost"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A throw-away loopback certificate made at every start: its validity does not depend on
        # any clock (RFC 5280's "no well-defined expiration date"), so a process whose clock
        # disagrees with OpenSSL's (a test with a moved clock) still trusts it.
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NO_EXPIRY)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CertFiles(cert_path=cert_path, key_path=key_path)
