"""The one compiled part of qwenkit: permute's short path for small arrays (src/qwenkit/permute/_shortpath.c).

Optional: where it cannot be built (no C compiler or Python headers), the install goes on and
``qwenkit.permute.permute`` is the Python function; ``qwenkit doctor`` says which one is in use.
"""

import numpy
from setuptools import Extension, setup

setup(ext_modules=[Extension("qwenkit.permute._shortpath", ["src/qwenkit/permute/_shortpath.c"],
                             include_dirs=[numpy.get_include()], extra_compile_args=["-O2"], optional=True)])
