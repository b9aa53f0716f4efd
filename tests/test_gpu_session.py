"""benchmarks/gpu_session.py: the one command a lent GPU machine runs (issue 15 goal 5).

A lent machine gives about 15 minutes in all, so the script must not fail on its own code there.
Here (no GPU) it runs as a rehearsal on the tiny model: every step that needs a GPU must say it
was skipped, and the rest must really run and report numbers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location(
        "gpu_session", ROOT / "benchmarks" / "gpu_session.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="the rehearsal is for machines without a GPU")
def test_rehearsal_on_the_tiny_model_reports_every_step(tmp_path):
    gs = _load()
    out = tmp_path / "out"
    assert gs.main(["--out", str(out), "--model", "tiny", "--work", str(tmp_path / "w")]) == 0
    run = json.loads((out / "gpu_session.json").read_text())
    steps = run["steps"]
    assert list(steps) == ["machine", "build", "tests", "kernels", "nccl", "model"]
    for name in ("build", "tests", "kernels", "nccl"):  # each needs a GPU: skipped, not failed
        assert "skipped" in steps[name], (name, steps[name])
    assert steps["machine"]["rc"] == 0 and steps["machine"]["cuda_available"] is False
    model = steps["model"]
    assert model["rc"] == 0 and model["device"] == "cpu"
    r = model["backends"]["numba"]
    assert "error" not in r, r
    assert r["prefill_16_s"] > 0 and r["prefill_64_s"] > 0 and r["decode_tok_s"] > 0
    assert len(r["tokens"]) == gs.DECODE_TOKENS
    import gptoss_edu as ge

    ids = torch.tensor(r["tokens"])
    assert bool(((ids >= 0) & (ids < ge.ModelConfig.tiny().vocab_size)).all())
    page = (out / "gpu_session.md").read_text()
    assert "| model |" in page and "| numba |" in page and "FAILED" not in page
    log = (out / "gpu_session.log").read_text()
    for name in ("machine", "build", "tests", "kernels", "nccl", "model"):
        assert f"===== {name}: rc" in log, name
    assert len(list(out.iterdir())) <= 8  # the device tool brings back at most 8 files


def test_a_failing_or_hanging_step_is_reported_and_the_run_goes_on(tmp_path):
    gs = _load()
    env = {"PATH": "/usr/bin:/bin"}
    r = gs.run_step("boom", [sys.executable, "-c", "raise SystemExit('kaput')"], 30, tmp_path, env)
    assert r["rc"] == 1 and "kaput" in r["error"]
    assert "kaput" in (tmp_path / "gpu_session.log").read_text()
    r = gs.run_step("slow", [sys.executable, "-c", "import time; time.sleep(30)"], 1, tmp_path, env)
    assert r["rc"] == "timeout" and r["s"] < 20
    partial = "print('RESULT {\"done\": 1}', flush=True); import time; time.sleep(30)"
    r2 = gs.run_step("part", [sys.executable, "-c", partial], 2, tmp_path, env)
    assert r2["rc"] == "timeout" and r2["done"] == 1  # what it reported before the limit stays
    page = gs.render({"date": "d", "model": "tiny", "steps": {"slow": r}})
    assert "| slow |" in page and "FAILED (timeout)" in page


def test_out_of_time_steps_are_skipped_not_started(tmp_path):
    gs = _load()
    out = tmp_path / "out"
    assert (
        gs.main(
            ["--out", str(out), "--model", "tiny", "--budget", "5", "--work", str(tmp_path / "w")]
        )
        == 0
    )
    steps = json.loads((out / "gpu_session.json").read_text())["steps"]
    assert steps and all(s.get("skipped") == "out of time" for s in steps.values()), steps
