"""A local HTTPS identity provider for the key-set discovery tests, made at test time: its own CA and server
certificate (openssl), Ed25519 signing keys (cryptography) that it rotates and retires on demand, tokens signed with
them (PyJWT), and the ways a real provider misbehaves, switched by one attribute.

    with IdentityProvider(directory) as idp:
        idp.issuer                      # https://127.0.0.1:<port>
        idp.mint(tenant)                # a token its published keys verify
        idp.rotate(); idp.retire(kid)   # key rotation as Supabase and others do it
        idp.mode = "garbage"            # see MODES
        idp.hits["/jwks.json"]          # how often the key set was fetched

Every provider made with the same `directory` shares its CA and server certificate, so that one CA file
(`ca_file(directory)`, for tenant_guard.discovery_ca_file) trusts them all. The server's keys stay in `directory`
with mode 0600; ca.crt is world-readable, and belongs to the PostgreSQL server's OS user when run as root."""

import json
import os
import pwd
import secrets
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

WELL_KNOWN = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks.json"
AUDIENCE = "orders-api"
EVIL = "https://evil.example"
HUGE_BYTES = 5 * 1024 * 1024

MODES = {
    "ok": "behaves",
    "garbage": "the key set is not JSON (an HTML page)",
    "not_a_key_set": 'the key set is JSON, but {"keys": []}',
    "bad_key": "the key set is JSON, but its one key is not an Ed25519 public key",
    "status_500": "the key set answers HTTP 500",
    "status_500_config": "the OpenID configuration answers HTTP 500",
    "redirect": "the key set answers 302 to " + EVIL + JWKS_PATH,
    "redirect_config": "the OpenID configuration answers 302 to " + EVIL + WELL_KNOWN,
    "huge": f"the key set is a valid key set padded with whitespace to {HUGE_BYTES} bytes",
    "wrong_issuer": 'the configuration\'s "issuer" is ' + EVIL,
    "foreign_jwks_uri": "jwks_uri is on the same address, another port (alt_port, which serves the same keys)",
    "foreign_host": "jwks_uri names host localhost instead of 127.0.0.1 (same server, another host name)",
    "http_jwks_uri": "jwks_uri is http://",
    "nul_member": "the key set is valid, but a key carries a member whose string holds \\u0000 (jsonb refuses it)",
    "slow": "every answer waits `delay` seconds first (stop() cuts the wait short)",
}


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _postgres_uid():
    try:
        return pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return None


CA_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = tenant_guard test identity provider CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_certs(directory, server_uid=None):
    """Writes ca.{crt,key} and server.{crt,key} (for IP:127.0.0.1 and DNS:localhost) into `directory`, unless they
    are there already. ca.crt is readable by everyone and, when run as root, belongs to `server_uid` (default: the
    `postgres` OS user), which reads it through tenant_guard.discovery_ca_file. Returns the path of ca.crt."""
    os.makedirs(directory, exist_ok=True)
    c = lambda name: os.path.join(directory, name)  # noqa: E731
    if not (os.path.exists(c("ca.crt")) and os.path.exists(c("server.crt")) and os.path.exists(c("server.key"))):
        with open(c("ca.cnf"), "w") as f:
            f.write(CA_CONFIG)
        with open(c("server.ext"), "w") as f:
            f.write(SERVER_EXTENSIONS)
        _openssl("req", "-x509", "-config", c("ca.cnf"), "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-days", "2", "-keyout", c("ca.key"), "-out", c("ca.crt"))
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-subj", "/CN=127.0.0.1", "-keyout", c("server.key"), "-out", c("server.csr"))
        _openssl("x509", "-req", "-in", c("server.csr"), "-CA", c("ca.crt"), "-CAkey", c("ca.key"),
                 "-CAcreateserial", "-days", "2", "-sha256", "-extfile", c("server.ext"), "-out", c("server.crt"))
    for name in os.listdir(directory):
        os.chmod(c(name), 0o600 if name.endswith(".key") else 0o644)
    os.chmod(directory, 0o755)
    if os.getuid() == 0:
        uid = server_uid if server_uid is not None else _postgres_uid()
        if uid is not None:
            os.chown(c("ca.crt"), uid, -1)
    return c("ca.crt")


def ca_file(directory):
    return os.path.join(directory, "ca.crt")


class SigningKey:
    """An Ed25519 key pair with its kid."""

    def __init__(self, kid):
        self.kid = kid
        self.private = ed25519.Ed25519PrivateKey.generate()

    def public_jwk(self):
        jwk = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        jwk.update(kid=self.kid, alg="EdDSA", use="sig")
        return jwk

    def __repr__(self):
        return f"SigningKey({self.kid!r})"


class _Server(ThreadingHTTPServer):
    """Accepts in the serving thread, does the TLS handshake in the request's thread (a client that never finishes
    its handshake must not block the others)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, idp, context):
        self.idp = idp
        self.context = context
        super().__init__(address, _Handler, bind_and_activate=False)
        try:
            self.server_bind()
        except OSError:
            self.server_close()
            raise

    def finish_request(self, request, client_address):
        request.settimeout(15)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass  # clients that hang up (the huge body, a timed-out fetch) are expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "tenant_guard-test-idp"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        idp = self.server.idp
        path = self.path.split("?", 1)[0]
        port = self.server.server_address[1]
        idp._count(port, path)
        self.close_connection = True
        if idp.mode == "slow" and idp._stopping.wait(idp.delay):
            return  # stopped while waiting: hang up without an answer
        if path == WELL_KNOWN:
            self._configuration(idp)
        elif path == JWKS_PATH:
            self._key_set(idp)
        else:
            self._send(404, b'{"error": "not found"}')

    def _configuration(self, idp):
        if idp.mode == "redirect_config":
            return self._send(302, b"", Location=EVIL + WELL_KNOWN)
        if idp.mode == "status_500_config":
            return self._send(500, b'{"error": "internal"}')
        self._send(200, json.dumps(idp.configuration()).encode())

    def _key_set(self, idp):
        mode = idp.mode
        headers = {} if idp.max_age is None else {"Cache-Control": f"public, max-age={idp.max_age}"}
        if mode == "garbage":
            return self._send(200, b"<html><body>Service temporarily unavailable</body></html>",
                              content_type="text/html")
        if mode == "not_a_key_set":
            return self._send(200, b'{"keys": []}', **headers)
        if mode == "bad_key":
            bad = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "bm90LWEta2V5", "kid": "broken", "use": "sig"}]}
            return self._send(200, json.dumps(bad).encode(), **headers)
        if mode == "status_500":
            return self._send(500, b'{"error": "internal"}')
        if mode == "redirect":
            return self._send(302, b"", Location=EVIL + JWKS_PATH)
        if mode == "nul_member":
            keys = idp.jwks()
            keys["keys"][0]["x5u"] = "a\u0000b"
            return self._send(200, json.dumps(keys).encode(), **headers)
        body = json.dumps(idp.jwks()).encode()
        if mode == "huge":
            return self._stream_huge(idp, body, headers)
        self._send(200, body, **headers)

    def _send(self, status, body, content_type="application/json", **headers):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _stream_huge(self, idp, body, headers):
        """A valid key set, then whitespace (valid JSON too) up to HUGE_BYTES, written in pieces."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(HUGE_BYTES))
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        left = HUGE_BYTES - len(body)
        piece = b" " * 65536
        while left > 0 and not idp._stopping.is_set():
            n = min(left, len(piece))
            self.wfile.write(piece[:n])
            left -= n


class IdentityProvider:
    """An OpenID provider on https://127.0.0.1:<port>, serving /.well-known/openid-configuration and /jwks.json
    from a daemon thread. `port=None`: a free port, chosen (bound, not listening) when it is made and kept
    across stop()/start(); connections are refused until start() and after stop().
    It listens on `alt_port` as well (same answers), the other place a jwks_uri may point to
    (mode "foreign_jwks_uri").

    Attributes the tests set: mode (see MODES), delay (seconds, mode "slow"), max_age (the key set's Cache-Control
    max-age; None: no Cache-Control header). Counters: hits[path] (requests on the issuer's port), alt_hits[path]
    (on alt_port)."""

    def __init__(self, directory, port=None, alt_port=None):
        self.directory = directory
        make_certs(directory)
        self.port = port
        self.alt_port = alt_port
        self.mode = "ok"
        self.delay = 8.0
        self.max_age = None
        self.hits = {}
        self.alt_hits = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._servers = []
        self._all_keys = {}
        self.keys = []            # the published keys, the signing key last
        self.rotate()
        self._bound = []
        self._reserve_ports()

    # -- addresses --------------------------------------------------------------------------------------------------
    def _reserve_ports(self):
        """Binds both sockets now (port 0: the system picks), so that the issuer URL is known before start(); they
        do not listen until start(), so that connections to a provider not started yet are refused."""
        self._bound = []
        for attr in ("port", "alt_port"):
            server = self._make_server(getattr(self, attr) or 0, listen=False)
            setattr(self, attr, server.server_address[1])
            self._bound.append(server)

    @property
    def issuer(self):
        return f"https://127.0.0.1:{self.port}"

    @property
    def alt_origin(self):
        return f"https://127.0.0.1:{self.alt_port}"

    @property
    def configuration_url(self):
        return self.issuer + WELL_KNOWN

    @property
    def jwks_url(self):
        return self.issuer + JWKS_PATH

    def jwks_uri(self):
        """The jwks_uri the configuration names in the current mode."""
        return {
            "foreign_jwks_uri": self.alt_origin + JWKS_PATH,
            "foreign_host": f"https://localhost:{self.port}{JWKS_PATH}",
            "http_jwks_uri": f"http://127.0.0.1:{self.port}{JWKS_PATH}",
        }.get(self.mode, self.jwks_url)

    def configuration(self):
        issuer = EVIL if self.mode == "wrong_issuer" else self.issuer
        return {
            "issuer": issuer,
            "jwks_uri": self.jwks_uri(),
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        }

    # -- keys and tokens --------------------------------------------------------------------------------------------
    @property
    def kids(self):
        return [k.kid for k in self.keys]

    @property
    def signing_kid(self):
        return self.keys[-1].kid

    def rotate(self):
        """A new signing key, published beside the previous ones (which stay published until retired). Returns its
        kid."""
        key = SigningKey(f"ed-{len(self._all_keys) + 1}-{secrets.token_hex(4)}")
        self._all_keys[key.kid] = key
        self.keys = self.keys + [key]
        return key.kid

    def retire(self, kid):
        """Stops publishing key `kid` (mint can still sign with it, as a leaked or old key would)."""
        self.keys = [k for k in self.keys if k.kid != kid]

    def jwks(self):
        return {"keys": [k.public_jwk() for k in self.keys]}

    def mint(self, tenant, kid=None, lifetime=300, headers=None, **claims):
        """A token for `tenant` signed with key `kid` (default: the signing key), as conftest's Keys.mint makes
        them; claims given as None are left out."""
        key = self._all_keys[kid or self.signing_kid]
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": AUDIENCE, "sub": "user-" + str(tenant)[:8], "tenant_id": str(tenant),
                   "iat": now, "exp": now + lifetime}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        hdr = {"kid": key.kid}
        hdr.update(headers or {})
        return jwt.encode(payload, key.private, algorithm="EdDSA", headers=hdr)

    # -- serving ----------------------------------------------------------------------------------------------------
    def _count(self, port, path):
        with self._lock:
            counter = self.hits if port == self.port else self.alt_hits
            counter[path] = counter.get(path, 0) + 1

    def jwks_hits(self):
        with self._lock:
            return self.hits.get(JWKS_PATH, 0)

    def _context(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(os.path.join(self.directory, "server.crt"),
                                os.path.join(self.directory, "server.key"))
        return context

    def _make_server(self, port, listen=True):
        server = _Server(("127.0.0.1", port), self, self._context())
        if listen:
            server.server_activate()
        return server

    def start(self):
        if self._servers:
            return self
        self._stopping.clear()
        bound, self._bound = self._bound, []
        for server in bound:
            server.server_activate()
        servers = bound or [self._make_server(self.port), self._make_server(self.alt_port)]
        for server in servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                                      name=f"idp-{server.server_address[1]}")
            thread.start()
            self._servers.append((server, thread))
        return self

    def stop(self):
        """Closes the listening sockets (connections are refused from now on) and cuts short the answers still
        waiting ("slow") or streaming ("huge")."""
        self._stopping.set()
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(5)
        self._servers = []
        for server in self._bound:
            server.server_close()
        self._bound = []

    @property
    def running(self):
        return bool(self._servers)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def refused(port, host="127.0.0.1"):
    """Whether a TCP connection to host:port is refused now."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
