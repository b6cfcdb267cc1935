"""Build the compiled L1 (``src/mlcache/_lru.pyx``) and key checks (``_keys.pyx``); everything
else is in pyproject.toml.

Set ``MLCACHE_NO_EXTENSIONS=1`` to build a pure-Python install.  A failed
compile is not fatal: the package falls back to ``mlcache._lru_py`` and ``_keys_py``.
"""
import os
import sys

from setuptools import Extension, setup

NO_EXTENSIONS = bool(os.environ.get("MLCACHE_NO_EXTENSIONS")) or sys.implementation.name != "cpython"

if NO_EXTENSIONS:
    ext_modules = []
else:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [
            Extension(
                "mlcache._lru",
                ["src/mlcache/_lru.pyx"],
                depends=["src/mlcache/_lru_table.h"],
                include_dirs=["src/mlcache"],
                extra_compile_args=["-O3"],
            ),
            Extension("mlcache._keys", ["src/mlcache/_keys.pyx"], extra_compile_args=["-O3"]),
        ],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )

setup(ext_modules=ext_modules)
