"""Certificates and keys for a throwaway local cluster.

Two CAs, as kubeadm lays them out: the cluster CA signs serving certificates
and client identities (CN = user, O = groups); the front-proxy CA signs only
the client certificate the API server's aggregator presents to extension API
servers (prometheus-adapter), which trust it as the API server's
`--requestheader-client-ca-file` publishes it (kube-system's
extension-apiserver-authentication ConfigMap). Keeping them apart is what stops an ordinary
client certificate from asserting X-Remote-User to the adapter.

The service-account key pair is RSA: the API server signs tokens with it
(RS256). Certificates use EC P-256 keys, which every component accepts and
which are quick to generate.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test or demo, short enough that a leaked key is worthless soon.
VALIDITY = datetime.timedelta(days=7)
# Certificates are valid from a little in the past: clock skew between this
# process and the one verifying is zero here, but not-yet-valid is a silly way to fail.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertPaths:
    cert: Path
    key: Path


@dataclass(frozen=True)
class _Authority:
    paths: CertPaths
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(common_name: str, organizations=()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _create_authority(directory: Path, name: str, common_name: str) -> _Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    cert = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .sign(key, hashes.SHA256())
    )
    paths = CertPaths(directory / f"{name}.crt", directory / f"{name}.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths.key, key)
    return _Authority(paths, cert, key)


def _extended_usages(server: bool, client: bool) -> list:
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if not usages:
        raise ValueError("a certificate must be for a server, a client, or both")
    return usages


class Pki:
    """A directory of PEM files: `ca.*`, `front-proxy-ca.*`, `sa.key`/`sa.pub`, and issued `<name>.crt/.key`."""

    def __init__(self, directory: Path, authorities: dict[str, _Authority]):
        self.directory = directory
        self._authorities = authorities

    @classmethod
    def create(cls, directory: Path | str) -> Pki:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        authorities = {
            "cluster": _create_authority(directory, "ca", "localcluster-ca"),
            "front-proxy": _create_authority(directory, "front-proxy-ca", "localcluster-front-proxy-ca"),
        }
        pki = cls(directory, authorities)
        pki._create_service_account_keys()
        return pki

    def _create_service_account_keys(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(self.sa_key, key)
        self.sa_pub.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    @property
    def ca_cert(self) -> Path:
        return self._authorities["cluster"].paths.cert

    @property
    def ca_key(self) -> Path:
        return self._authorities["cluster"].paths.key

    @property
    def front_proxy_ca_cert(self) -> Path:
        return self._authorities["front-proxy"].paths.cert

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def issue(
        self,
        name: str,
        common_name: str,
        organizations=(),
        dns_names=(),
        ip_addresses=(),
        server: bool = False,
        client: bool = False,
        ca: str = "cluster",
    ) -> CertPaths:
        """Write `<name>.crt` and `<name>.key`, signed by the named CA."""
        authority = self._authorities[ca]
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(_name(common_name, organizations), authority.cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(_extended_usages(server, client)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False
            )
        )
        alt_names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(authority.key, hashes.SHA256())
        paths = CertPaths(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(paths.key, key)
        return paths
