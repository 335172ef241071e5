"""Token-pool minter for the benchmark: signs pools of JWTs with the test fixture keys
(tests/fixtures/keys) and writes the JWKS every contender verifies them against.

    python bench/mint.py jwks OUT.json
    python bench/mint.py pool --alg EdDSA --count 200000 OUT.txt [--invalid]

A pool is one token per line, every token distinct (`sub` = user-0000001, ...), in the
Better Auth shape: header {alg, kid}, claims {iss, aud, sub, iat, exp}. `--invalid`
signs with a key that is not in the JWKS, under the published `kid`, so every token is
well-formed but fails its signature check (the 401 path). Signing is spread over every
CPU; RS256 is the slow one (about 1 ms a token per core).
"""

import argparse
import base64
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "tests" / "fixtures" / "keys"

ISSUER = "http://127.0.0.1:3000"
AUDIENCE = "http://127.0.0.1:3000"
# Far enough ahead for any run; the gateway caches a verified token for at most a day.
LIFETIME = 365 * 86400

# alg -> (fixture file, kid published in the JWKS)
SIGNERS = {
    "EdDSA": ("ed25519.pem", "bench-ed25519"),
    "ES256": ("p256.pem", "bench-p256"),
    "RS256": ("rsa2048.pem", "bench-rsa"),
}
# The key that signs invalid tokens: real Ed25519, never published.
INVALID_SIGNER = "ed25519-other.pem"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_key(name: str):
    return serialization.load_pem_private_key((KEYS / name).read_bytes(), password=None)


def jwk(alg: str) -> dict:
    file, kid = SIGNERS[alg]
    pub = load_key(file).public_key()
    if alg == "EdDSA":
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": kid, "alg": "EdDSA", "use": "sig"}
    if alg == "ES256":
        n = pub.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64(n.x.to_bytes(32, "big")),
            "y": b64(n.y.to_bytes(32, "big")),
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        }
    n = pub.public_numbers()
    return {
        "kty": "RSA",
        "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
        "e": b64(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big")),
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
    }


def sign(alg: str, key, message: bytes) -> bytes:
    if alg == "EdDSA":
        return key.sign(message)
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def _mint_range(args) -> list[str]:
    alg, invalid, start, stop, now = args
    file, kid = SIGNERS[alg]
    key = load_key(INVALID_SIGNER if invalid else file)
    header = b64(json.dumps({"alg": alg, "kid": kid}, separators=(",", ":")).encode())
    out = []
    for i in range(start, stop):
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{i:07d}", "iat": now, "exp": now + LIFETIME}
        payload = b64(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}"
        out.append(f"{signing_input}.{b64(sign(alg, key, signing_input.encode()))}")
    return out


def mint(alg: str, count: int, invalid: bool = False) -> list[str]:
    if invalid and alg != "EdDSA":
        raise SystemExit("--invalid pools are EdDSA")
    now = int(time.time())
    workers = max(1, min(os.cpu_count() or 1, count // 1000 or 1))
    step = -(-count // workers)
    chunks = [(alg, invalid, s, min(s + step, count), now) for s in range(0, count, step)]
    if workers == 1:
        parts = [_mint_range(c) for c in chunks]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_mint_range, chunks)
    return [t for part in parts for t in part]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("jwks", help="write the JWKS with every bench key")
    j.add_argument("out", type=Path)
    p = sub.add_parser("pool", help="write a pool of distinct tokens, one per line")
    p.add_argument("--alg", choices=sorted(SIGNERS), required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--invalid", action="store_true", help="sign with a key the JWKS lacks")
    p.add_argument("out", type=Path)
    a = ap.parse_args()

    if a.cmd == "jwks":
        doc = {"keys": [jwk(alg) for alg in SIGNERS]}
        a.out.write_text(json.dumps(doc, indent=1) + "\n")
        return 0
    start = time.monotonic()
    tokens = mint(a.alg, a.count, a.invalid)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text("\n".join(tokens) + "\n")
    tmp.replace(a.out)
    print(
        f"minted {len(tokens)} {'invalid ' if a.invalid else ''}{a.alg} tokens in "
        f"{time.monotonic() - start:.1f}s -> {a.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
