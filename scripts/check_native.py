"""Say loudly, at install, when a C part was not built.

setup.py builds the Cython modules as optional extensions, so a machine without
gcc or the Python or OpenSSL headers still installs syncbus, with the Python versions doing
the work several times slower. pip hides the build log, so without this check that
shows up only later, as failing tests (which name the missing module too). Every
``.pyx`` under ``src/syncbus`` is expected as an importable module; the exit status
stays 0 because the Python fallbacks give the same bytes and verdicts.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def missing_native_modules() -> list[tuple[str, str]]:
    """(module, why) for every Cython module of the tree that does not import."""
    missing = []
    for pyx in sorted((SRC / "syncbus").rglob("*.pyx")):
        module = ".".join(pyx.relative_to(SRC).with_suffix("").parts)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing.append((module, str(exc)))
    return missing


def main() -> int:
    missing = missing_native_modules()
    if missing:
        bar = "!" * 78
        lines = [bar, "syncbus: the C parts below were NOT built; Python versions run instead,",
                 "several times slower, and the tests that expect them fail:"]
        lines += [f"  {module}: {why}" for module, why in missing]
        lines += ["Fix: install gcc, the Python and OpenSSL headers (Debian: gcc python3-dev",
                  "libssl-dev), then `rm .venv/.installed && make venv` (`pip install -v -e .`",
                  "shows the build log).",
                  bar]
        print("\n".join(lines), file=sys.stderr)
    else:
        print("syncbus: all C parts built")
    return 0


if __name__ == "__main__":
    sys.exit(main())
