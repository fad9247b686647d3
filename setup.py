"""Builds the optional native Avro codec; everything else is in pyproject.toml.

``syncbus.core._avro_native`` is C compiled from Cython. ``optional=True``: on a
machine without a C compiler the install still succeeds and the codec uses
fastavro for everything, which gives the same bytes, several times slower
(``tests/unit/test_avro_native.py`` says so loudly where the build is expected).
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
            )
        ],
        compiler_directives={"language_level": "3"},
    )
)
