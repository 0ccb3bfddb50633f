"""The Triton requirement of the benchmark scripts that run or compile our kernels
(``host_overhead.py``, ``kernel_static.py``, ``kernel_model.py``, ``racecheck_batch8.py``,
``memcheck_kernels.py``): where it is not met they print one line naming the package and the
reason, and exit with status 2, instead of an import traceback.

Call :func:`require_triton` after ``TRITON_INTERPRET`` has been set (the kernels are loaded
here, and Triton reads it when they are decorated).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The Triton release the benchmarks were last run with (the install hint).
TESTED_TRITON = "3.8.0"


def triton_problem(nvidia: bool = False) -> str:
    """Why our Triton kernels cannot be loaded here ("" when they can). ``nvidia``: also need
    the NVIDIA compiler backend and the ahead-of-time compile API (compiling for sm_90 without
    a GPU)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from operators.backends.triton_backend import triton_version_problem
    try:
        import triton
    except Exception as exc:  # ImportError, or a broken install
        return f"triton cannot be imported ({type(exc).__name__}: {exc})"
    version = getattr(triton, "__version__", "0")
    if triton_version_problem(version):  # the floor where they will run (interpreter or GPU)
        return f"triton {version} is installed"
    try:
        from operators.backends import triton_kernels  # noqa: F401
    except Exception as exc:
        return f"the kernels cannot be loaded ({type(exc).__name__}: {exc})"
    if nvidia:
        try:
            from triton.backends import backends
            from triton.backends.compiler import GPUTarget  # noqa: F401
            from triton.compiler import ASTSource  # noqa: F401
        except Exception as exc:
            return (f"this triton has no ahead-of-time compile API "
                    f"({type(exc).__name__}: {exc})")
        if "nvidia" not in backends:
            return f"triton {version} has no NVIDIA backend (backends: {sorted(backends)})"
    return ""


def require_triton(script: str, nvidia: bool = False) -> None:
    """Exit with status 2 and a one-line message on stderr when :func:`triton_problem`."""
    why = triton_problem(nvidia)
    if why:
        from operators.backends.triton_backend import min_triton
        floor = ".".join(map(str, min_triton()))
        what = " with its NVIDIA backend" if nvidia else ""
        why = " ".join(why.split())  # one line
        print(f"{script} needs Triton >= {floor}{what} (pip install triton=={TESTED_TRITON}): "
              f"{why}", file=sys.stderr)
        raise SystemExit(2)
