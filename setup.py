"""Builds the optional native parts; everything else is in pyproject.toml.

``syncbus.core._avro_native`` (the Avro codec), ``syncbus.core._formats`` (the
check digits of citizen IDs and USCCs, from ``_id_checks.h``), ``syncbus.publisher._rows`` (the
publisher's loop over new-state changes) and ``syncbus.router._bytepath`` (the
router's byte path, with libcrypto's HMAC-SHA256 from ``_hmac.h``) are C compiled from Cython.
``optional=True``: on a machine without a C compiler the install still succeeds,
the codec uses fastavro for everything and the rest their Python versions, which
give the same bytes and verdicts, several times slower. pip hides this build's log, so
``make venv`` runs ``scripts/check_native.py`` after it, which names every module that
was not built and how to fix it; the tests that expect them fail saying the same.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "syncbus.core._avro_native",
                ["src/syncbus/core/_avro_native.pyx"],
                optional=True,
                extra_compile_args=["-O2"],
            ),
            Extension(
                "syncbus.core._formats",
                ["src/syncbus/core/_formats.pyx"],
                include_dirs=["src/syncbus/core"],
                depends=["src/syncbus/core/_id_checks.h"],
                optional=True,
                extra_compile_args=["-O2"],
            ),
            Extension(
                "syncbus.router._bytepath",
                ["src/syncbus/router/_bytepath.pyx"],
                include_dirs=["src/syncbus/router", "src/syncbus/core"],
                depends=["src/syncbus/router/_hmac.h", "src/syncbus/core/_id_checks.h"],
                libraries=["crypto"],  # keyed tokens: libcrypto's HMAC (Debian: libssl-dev)
                optional=True,
                extra_compile_args=["-O2"],
            ),
            Extension(
                "syncbus.publisher._rows",
                ["src/syncbus/publisher/_rows.pyx"],
                optional=True,
                extra_compile_args=["-O2"],
            ),
        ],
        compiler_directives={"language_level": "3"},
    )
)
