"""A private CA and one server certificate for the NATS servers of deploy/ (TLS for clients and
for the routes between servers).

    python -m tools.nats_tls DIR [--hosts nats-1,nats-2,nats-3]

writes, in the layout cert-manager uses for a ``kubernetes.io/tls`` Secret:

    DIR/ca.crt    the CA certificate: services check the servers against it
                  (CERTIBLOC_NATS_TLS_CA_FILE); servers check each other's routes
    DIR/ca.key    the CA's private key (mode 0600): only to issue the next server certificate;
                  keep it out of every container
    DIR/tls.crt   the servers' certificate (shared by the three), signed by the CA
    DIR/tls.key   its private key (mode 0600)

The certificate names every host a client or a route dials (``--hosts``, then the names the
Kubernetes Services of deploy/k8s give the servers, then localhost and 127.0.0.1) and may be
used both as a server and as a client certificate: NATS routes authenticate each other with
it, in both directions. Existing files are kept, so running it again changes nothing; delete
tls.crt and tls.key to issue a new server certificate from the same CA. Operators with their
own PKI put their files under these names instead.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY, CERT, KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"
DEFAULT_HOSTS = ("nats-1", "nats-2", "nats-3")
NAMESPACE = "certibloc"
CLUSTER_DOMAIN = "cluster.local"  # Kubernetes' default; add yours with --hosts if it differs
CA_DAYS = 3650
CERT_DAYS = 825  # about two years and three months; renewing: deploy/README.md, "TLS"

PrivateKey = ec.EllipticCurvePrivateKey


def kubernetes_names(namespace: str = NAMESPACE, domain: str = CLUSTER_DOMAIN) -> list[str]:
    """What a pod in ``namespace`` may dial: each server's own Service (``nats-1``), the
    governing headless Service (``nats``) and the pods' names under it (``nats-1.nats``),
    short and qualified (deploy/k8s/10-nats.yaml)."""
    names: list[str] = []
    for base in [*DEFAULT_HOSTS, "nats", *(f"{host}.nats" for host in DEFAULT_HOSTS)]:
        names += [base, f"{base}.{namespace}", f"{base}.{namespace}.svc"]
        names.append(f"{base}.{namespace}.svc.{domain}")
    return names


def subject_names(hosts: Sequence[str]) -> list[str]:
    """The DNS names of the certificate, in order, without duplicates."""
    return list(dict.fromkeys([*hosts, *kubernetes_names(), "localhost"]))


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_private(path: Path, key: PrivateKey) -> None:
    """A PEM private key, created with mode 0600 (never readable by others, even briefly)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def write_certificate(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: str, issuer: x509.Name, key: PrivateKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def create_ca(directory: Path) -> None:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certibloc NATS CA")])
    certificate = (
        _builder("certibloc NATS CA", name, key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .sign(key, hashes.SHA256())
    )
    write_private(directory / CA_KEY, key)
    write_certificate(directory / CA_CERT, certificate)


def create_server_certificate(directory: Path, hosts: Sequence[str]) -> None:
    ca_key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise SystemExit(f"{directory / CA_KEY}: not an EC key; issue the certificate yourself")
    ca = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = new_key()
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in subject_names(hosts)]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    certificate = (
        _builder(hosts[0] if hosts else "nats", ca.subject, key, CERT_DAYS)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Server for clients and incoming routes; client for the routes it dials itself.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(directory / KEY, key)
    write_certificate(directory / CERT, certificate)


def ensure(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> None:
    """Create what is missing in ``directory``: the CA, then the server certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if not (directory / CA_CERT).exists():
        if (directory / CA_KEY).exists():
            raise SystemExit(f"{directory / CA_KEY} exists without {CA_CERT}: restore it")
        create_ca(directory)
    if not (directory / CERT).exists():
        (directory / KEY).unlink(missing_ok=True)  # left by an interrupted run: unpaired
        create_server_certificate(directory, hosts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.nats_tls", description="a CA and a certificate for NATS TLS"
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "--hosts",
        default=",".join(DEFAULT_HOSTS),
        help="comma-separated DNS names clients and routes dial (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    hosts = [host.strip() for host in args.hosts.split(",") if host.strip()]
    ensure(args.directory, hosts)
    print(f"NATS TLS files in {args.directory} ({CA_CERT}, {CERT}, {KEY}; {CA_KEY} stays there)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
