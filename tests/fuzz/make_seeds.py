"""Writes the fuzzers' fixed inputs: seeds/jwks.json (public keys, one per algorithm), seeds/tokens.txt (one validly
signed token per algorithm, valid at the fuzzers' fixed clock) and a starting corpus for each target.

The private keys exist only while this script runs. Run it again only to change the seeds:
    .venv/bin/python tests/fuzz/make_seeds.py
"""
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import Keys, ALGS, ISS, AUD  # noqa: E402  (the e2e suite's key generator)
import jwt  # noqa: E402

NOW = 1_800_000_000  # the fuzzers' clock (2027-01-15)
HERE = pathlib.Path(__file__).resolve().parent
TENANT = "5b1c9a52-3f0e-4c1e-9d7a-0a6f2b8e4d11"

keys = Keys()
seeds = HERE / "seeds"
seeds.mkdir(exist_ok=True)
(seeds / "jwks.json").write_text(json.dumps(keys.jwks()) + "\n")
tokens = []
for alg in ALGS:
    claims = {"iss": ISS, "aud": AUD, "sub": "fuzz", "tenant_id": TENANT, "iat": NOW, "exp": NOW + 600}
    tokens.append(jwt.encode(claims, keys.signing_key(alg), algorithm=alg, headers={"kid": keys.kid(alg)}))
(seeds / "tokens.txt").write_text("\n".join(tokens) + "\n")
(seeds / "issuer.txt").write_text(f"{ISS}\n{AUD}\n")

for target, inputs in {
    "token": [t.encode() for t in tokens],
    "jwks": [json.dumps(keys.jwks()).encode()] + [json.dumps({"keys": [keys.public_jwk(a)]}).encode() for a in ALGS],
    "ciphertext": [b"\x00" * 40, b"\x01" + os.urandom(48), b"\x81\x00\x00\x00\x01" + b"\x00" * 28],
}.items():
    corpus = HERE / "corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(inputs):
        (corpus / f"seed-{i}").write_bytes(data)
print(f"wrote {len(tokens)} tokens, the key set and the seed corpora under {HERE}")
