"""What every exercise checker shares: run the reader's function, turn any failure into one
readable line, never let a traceback escape."""

from __future__ import annotations

import inspect
import random
import traceback
from collections.abc import Callable, Sequence

import torch


class ExerciseFailure(Exception):
    """Raised inside a check to report what is wrong, in words a reader can act on."""


def expect_close(got, expected, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Compare a reader's tensor with the expected one and explain the first difference."""
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailure(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise ExerciseFailure(
            f"{what}: wrong shape {tuple(got.shape)}; expected {tuple(expected.shape)}"
        )
    if got.dtype != expected.dtype:
        raise ExerciseFailure(f"{what}: wrong dtype {got.dtype}; expected {expected.dtype}")
    if not torch.allclose(got.double(), expected.double(), rtol=rtol, atol=atol, equal_nan=True):
        diff = (got.double() - expected.double()).abs()
        i = int(torch.argmax(torch.nan_to_num(diff, nan=float("inf"))))
        flat_got, flat_exp = got.reshape(-1), expected.reshape(-1)
        ratio = ""
        if float(flat_exp[i]) != 0:
            r = float(flat_got[i]) / float(flat_exp[i])
            ratio = f" (ratio {r:.4g})"
        raise ExerciseFailure(
            f"{what}: values differ; largest difference {float(diff.reshape(-1)[i]):.3g} at flat "
            f"index {i}: got {float(flat_got[i]):.6g}, expected {float(flat_exp[i]):.6g}{ratio}"
        )


def run_check(name: str, fn: Callable, body: Callable[[Callable], str | None]) -> bool:
    """Run `body(fn)`; print a PASS line or the reason for failure; return whether it passed."""
    if not callable(fn):
        print(f"❌ {name}: expected a function, got {type(fn).__name__}")
        return False
    try:
        detail = body(fn)
    except NotImplementedError as e:
        msg = str(e) or "the function still raises NotImplementedError"
        print(f"⏳ {name}: not done yet ({msg}). Fill in the TODO and run this cell again.")
        return False
    except ExerciseFailure as e:
        print(f"❌ {name}: {e}")
        return False
    except Exception as e:  # the reader's code crashed: show where, briefly
        tb = traceback.extract_tb(e.__traceback__)
        where = f" (line {tb[-1].lineno}: {tb[-1].line})" if tb else ""
        print(f"❌ {name}: your function raised {type(e).__name__}: {e}{where}")
        return False
    print(f"✅ {name}: passed" + (f" ({detail})" if detail else ""))
    return True


def cases(visible: Sequence, seed: int | None, draw: Callable[[random.Random], object], n: int = 4):
    """The cases a checker runs: `visible` (the ones its notebook shows) when seed is None, else
    `n` cases drawn by `draw(rng)` from random.Random(seed): inputs the student never saw."""
    if seed is None:
        return list(visible)
    rng = random.Random(seed)
    return [draw(rng) for _ in range(n)]


class Checker:
    """Decorator form: @Checker("check_rmsnorm") on a body(fn) function makes a checker.

    A body that takes a `seed` keyword, body(fn, seed=None), has hidden cases: `check(fn)` runs the
    cases the notebook shows, `check(fn, seed=S)` cases drawn from S (see `cases`); the autograder
    (tools/exercises.py grade) passes a new S per grading run. `check.hidden` says which kind.
    """

    def __init__(self, name: str):
        self.name = name

    def __call__(self, body: Callable[..., str | None]) -> Callable[..., bool]:
        hidden = "seed" in inspect.signature(body).parameters
        name = self.name

        def check(fn: Callable, seed: int | None = None) -> bool:
            if seed is None or not hidden:
                if seed is not None:
                    raise TypeError(f"{name} has no hidden cases: call it without seed=")
                return run_check(name, fn, body)
            return run_check(name, fn, lambda f: body(f, seed=seed))

        check.__name__ = name
        check.__doc__ = body.__doc__
        check.hidden = hidden
        return check
