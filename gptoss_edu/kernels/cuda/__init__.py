"""CUDA C++ back end of the MoE kernels (chapter 10): routing and MXFP4 matmul in ``*.cu``.

Importing this package builds nothing; the extension is compiled by ``build()`` or on the first
call of ``route`` / ``mxfp4_linear`` / ``moe_forward`` (about a minute, cached by torch).
``python -m gptoss_edu.kernels.cuda`` builds it ahead of use and checks it (``__main__.py``).
"""

from gptoss_edu.kernels.cuda.build import (
    build,
    is_available,
    is_built,
    moe_forward,
    mxfp4_linear,
    route,
)

__all__ = ["build", "is_available", "is_built", "moe_forward", "mxfp4_linear", "route"]
