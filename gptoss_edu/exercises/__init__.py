"""Checkers for the exercises in exercises/NN_topic.ipynb.

Each `check_*(fn)` calls the reader's function on small cases, compares it with the package's
own version, prints one clear line (what passed, or what is wrong: shape, dtype, a missing
factor, ...) and returns True or False. A checker never raises: an unfinished exercise
(`raise NotImplementedError`) gets a friendly "not done yet" line, not a traceback.

    import gptoss_edu as ge
    ge.exercises.check_rmsnorm(my_rmsnorm)

The checkers live one module per chapter (`ch03_norm.py`, ...) and are all collected here.
"""

import importlib
import pkgutil

from ._common import Checker, ExerciseFailure, run_check
from .my_gptoss import (  # your own gpt-oss, one module per chapter (see my_gptoss.py)
    enable_my_gptoss,
    save_module,
    set_student_dir,
    student_dir,
    student_module,
)

__all__ = [
    "Checker",
    "ExerciseFailure",
    "enable_my_gptoss",
    "run_check",
    "save_module",
    "set_student_dir",
    "student_dir",
    "student_module",
]

_origin: dict[str, str] = {}  # checker name -> module that defines it
for _info in pkgutil.iter_modules(__path__):
    if _info.name.startswith("ch"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in getattr(_module, "__all__", []):
            if _name in _origin:
                raise ImportError(
                    f"two exercise checkers are both called {_name!r} ({_origin[_name]} and "
                    f"{_module.__name__}): rename one of them"
                )
            _origin[_name] = _module.__name__
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
