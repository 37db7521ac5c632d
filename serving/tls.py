"""TLS material: a self-signed development pair (``stockray certs``) and gRPC credentials.

A development pair is a CA-less self-signed certificate valid for ``localhost``, 127.0.0.1
and ::1 (plus any names given); clients trust it by passing the certificate itself as the root
(``PredictionClient(..., tls_ca=cert)``). Production: use certificates from your CA and set
the same paths. Private keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

import grpc

from features.durable import atomic_write_bytes

CERT_FILE, KEY_FILE = "server.crt", "server.key"
CLIENT_CERT_FILE, CLIENT_KEY_FILE = "client.crt", "client.key"


def _write(path: Path, data: bytes, mode: int) -> None:
    atomic_write_bytes(path, data, mode=mode)


def _pair(common_name: str, names: list[str], days: int, *, server: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        # Self-signed and used as its own trust root by the other side: CA=True is required
        # for OpenSSL/BoringSSL to accept it as an anchor.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def make_dev_certs(
    directory: str | os.PathLike[str],
    hosts: list[str] | None = None,
    days: int = 90,
    *,
    client: bool = True,
) -> dict[str, Path]:
    """Write a self-signed server pair (and a client pair for mTLS) under ``directory``.

    Returns ``{"cert", "key", "client_cert", "client_key"}`` paths (client ones if asked).
    """
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = ["localhost", "127.0.0.1", "::1", *(hosts or [])]
    cert, key = _pair("stockray dev server", names, days, server=True)
    out = {"cert": d / CERT_FILE, "key": d / KEY_FILE}
    _write(out["cert"], cert, 0o644)
    _write(out["key"], key, 0o600)
    if client:
        ccert, ckey = _pair("stockray dev client", [], days, server=False)
        out |= {"client_cert": d / CLIENT_CERT_FILE, "client_key": d / CLIENT_KEY_FILE}
        _write(out["client_cert"], ccert, 0o644)
        _write(out["client_key"], ckey, 0o600)
    return out


def _read(path: str | os.PathLike[str]) -> bytes:
    return Path(path).read_bytes()


def server_credentials(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    client_ca: str | os.PathLike[str] | None = None,
) -> grpc.ServerCredentials:
    """TLS for a grpcio server; with ``client_ca`` clients must present a certificate it
    signed (mTLS)."""
    return grpc.ssl_server_credentials(
        [(_read(key), _read(cert))],
        root_certificates=_read(client_ca) if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def channel_credentials(
    ca: str | os.PathLike[str] | None,
    client_cert: str | os.PathLike[str] | None = None,
    client_key: str | os.PathLike[str] | None = None,
) -> grpc.ChannelCredentials:
    """Client TLS trusting ``ca`` (None: the system roots), with an optional client pair."""
    if bool(client_cert) != bool(client_key):
        # grpcio aborts the whole process (a C++ CHECK) on a key without its chain.
        raise ValueError("mTLS needs both a client certificate and its key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca) if ca else None,
        private_key=_read(client_key) if client_key else None,
        certificate_chain=_read(client_cert) if client_cert else None,
    )
