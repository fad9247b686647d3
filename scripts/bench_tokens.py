"""How much one keyed token costs, per implementation (issue: one HMAC, chosen by a figure).

Keyed tokens (HMAC-SHA256 under a subscriber's secret, 32 hex characters) protect
citizen IDs. This measures, for an 18-character citizen ID, the Python ways
(``hmac.digest``, a keyed ``hmac`` copied per token as ``core.masking.Tokeniser``
does, the kept-hashlib-states HMAC it used before) and, from ``scripts/bench_tokens.c``,
the C ways (the hand-written SHA-256 the byte path used before, libcrypto's HMAC
through EVP_MAC as ``router/_hmac.h`` does now, HMAC() one-shot, and libcrypto's
SHA-256 under kept key states). Best of five runs; figures are only comparable
within one run. Needs gcc and libssl-dev; run from the repository root:

    .venv/bin/python scripts/bench_tokens.py [--tokens N]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "b63833e"  # the last commit with the hand-written SHA-256
SECRET = b"secret-city.nanjing-0123456789"
TEXT = b"32050819900307123X"


def _kept_states() -> object:
    """The Python HMAC of kept hashlib states that ``Tokeniser`` used before."""
    key = SECRET.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def token() -> str:
        i = inner.copy()
        i.update(TEXT)
        o = outer.copy()
        o.update(i.digest())
        return o.hexdigest()[:32]

    return token


def python_figures(n: int) -> list[dict[str, object]]:
    keyed = hmac.new(SECRET, digestmod="sha256")

    def copied() -> str:
        h = keyed.copy()
        h.update(TEXT)
        return h.hexdigest()[:32]

    cases = {
        "py: hmac.digest(secret, text, 'sha256')": lambda: hmac.digest(SECRET, TEXT, "sha256")
        .hex()[:32],
        "py: keyed hmac copied per token (core.masking.Tokeniser now)": copied,
        "py: kept hashlib states (Tokeniser until b63833e)": _kept_states(),
    }
    reference = hmac.new(SECRET, TEXT, "sha256").hexdigest()[:32]
    out = []
    for name, fn in cases.items():
        assert fn() == reference, name
        best = min(timeit.repeat(fn, number=n, repeat=5)) / n
        out.append({"impl": name, "ns_per_token": round(best * 1e9, 1)})
    return out


def c_figures(n: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        old = subprocess.run(["git", "show", f"{BEFORE}:src/syncbus/router/_sha256.h"],
                             cwd=ROOT, capture_output=True, check=True).stdout
        (Path(tmp) / "_sha256.h").write_bytes(old)
        binary = Path(tmp) / "bench_tokens"
        subprocess.run(["gcc", "-O2", f"-I{tmp}", f"-I{ROOT / 'src/syncbus/router'}",
                        "-o", str(binary), str(ROOT / "scripts/bench_tokens.c"), "-lcrypto"],
                       check=True)
        done = subprocess.run([str(binary), str(n)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"bench_tokens.c: the implementations disagree (exit {done.returncode})")
        return [json.loads(line) for line in done.stdout.splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=300_000, help="tokens per run")
    args = parser.parse_args()
    for row in python_figures(args.tokens) + c_figures(args.tokens * 4):
        print(f"{row['ns_per_token']:9.1f} ns/token  {row['impl']}")


if __name__ == "__main__":
    main()
