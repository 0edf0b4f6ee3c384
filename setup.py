"""Build the compiled kernels (every ``src/adaspx/_*.pyx`` with the C of its ``_*_kernels.h``) with Cython, NumPy
headers and OpenMP."""

import sys
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

if sys.platform == "win32":
    omp_compile, omp_link = ["/openmp"], []
elif sys.platform == "darwin":  # Apple clang has no bundled OpenMP; build single-threaded there
    omp_compile, omp_link = [], []
else:
    omp_compile, omp_link = ["-fopenmp"], ["-fopenmp"]

extensions = [
    Extension(
        f"adaspx.{pyx.stem}",
        [str(pyx)],
        depends=[str(h) for h in pyx.parent.glob(f"{pyx.stem}_kernels.h")],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3", *omp_compile],
        extra_link_args=omp_link,
    )
    for pyx in sorted(Path("src/adaspx").glob("_*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
