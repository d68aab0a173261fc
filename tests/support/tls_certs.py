"""Certificates for the TLS tests, made by openssl at test time: a CA, a server certificate for 127.0.0.1, and client
certificates `x` and `y`, all signed by the CA; and the SHA-256 thumbprint a token's cnf x5t#S256 names."""

import base64
import hashlib
import os
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make(directory, server_uid=None):
    """Writes ca.crt, server.{crt,key}, x.{crt,key}, y.{crt,key} into `directory`; the server's files belong to
    `server_uid` (the server's OS user) when given."""
    os.makedirs(directory, exist_ok=True)
    c = lambda name: os.path.join(directory, name)  # noqa: E731
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=tenant_guard test CA", "-keyout", c("ca.key"), "-out", c("ca.crt"))
    for name, subject, ext in (("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                               ("x", "/CN=client-x/O=tenant_guard tests", "extendedKeyUsage=clientAuth"),
                               ("y", "/CN=client-y/O=tenant_guard tests", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject,
                 "-keyout", c(f"{name}.key"), "-out", c(f"{name}.csr"))
        with open(c(f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        _openssl("x509", "-req", "-in", c(f"{name}.csr"), "-CA", c("ca.crt"), "-CAkey", c("ca.key"),
                 "-CAcreateserial", "-days", "2", "-extfile", c(f"{name}.ext"), "-out", c(f"{name}.crt"))
    for name in os.listdir(directory):
        os.chmod(c(name), 0o600 if name.endswith(".key") else 0o644)
    os.chmod(directory, 0o755)
    if server_uid is not None and os.getuid() == 0:
        for name in ("server.key", "server.crt", "ca.crt"):
            os.chown(c(name), server_uid, -1)


def thumbprint(directory, name):
    """base64url SHA-256 of the DER encoding of certificate `name`: what cnf x5t#S256 carries (RFC 8705)."""
    with open(os.path.join(directory, f"{name}.crt"), "rb") as f:
        der = x509.load_pem_x509_certificate(f.read()).public_bytes(Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def server_settings(directory):
    """The ALTER SYSTEM statements that make a server speak TLS and ask clients for certificates of the CA."""
    return [f"ALTER SYSTEM SET ssl_cert_file = '{directory}/server.crt'",
            f"ALTER SYSTEM SET ssl_key_file = '{directory}/server.key'",
            f"ALTER SYSTEM SET ssl_ca_file = '{directory}/ca.crt'",
            "ALTER SYSTEM SET ssl = on"]


def client_options(directory, name):
    """psycopg connection options for a TLS connection with client certificate `name` (None: no certificate)."""
    options = {"sslmode": "verify-ca", "sslrootcert": os.path.join(directory, "ca.crt")}
    if name:
        options.update(sslcert=os.path.join(directory, f"{name}.crt"), sslkey=os.path.join(directory, f"{name}.key"))
    else:
        options.update(sslcert="", sslkey="")
    return options
