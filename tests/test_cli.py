import subprocess
import sys

import torch
from independent import random_config, random_original_tensors, write_original

from gptoss_edu.__main__ import info_text, main


def test_info_preset_figures():
    text = info_text("20b")
    assert "20,914,757,184" in text and "3,608,304,384" in text and "13,761,264,768" in text
    assert "116,829,156,672" in info_text("gpt-oss-120b")


def test_info_checkpoint_directory(tmp_path):
    cfg = random_config(0)
    path = write_original(tmp_path / "ck", cfg, random_original_tensors(cfg, 0))
    text = info_text(str(path))
    assert (
        "original checkpoint" in text and f"num_experts              {cfg['num_experts']}" in text
    )


def test_info_errors_cleanly(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_module_entry_point():
    r = subprocess.run(
        [sys.executable, "-m", "gptoss_edu", "info", "tiny"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "hidden_size" in r.stdout
    assert torch.__version__


def test_bench_lists_the_repositorys_benchmarks(capsys):
    assert main(["bench"]) == 2  # no name: the list, and a usage error
    out = capsys.readouterr().out
    assert "kernels" in out and "memory_20b" in out and "collect" not in out.split("one of:")[1]


def test_generate_warns_about_the_back_end_before_the_text():
    r = subprocess.run(
        [sys.executable, "-m", "gptoss_edu", "generate", "--tiny", "--prompt", "def "]
        + ["--max-new-tokens", "3", "--seed", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, in the order it was written
        text=True,
    )
    assert r.returncode == 0
    before, _, text = r.stdout.partition("def ")
    assert "kernel back end" in before and "kernel back end" not in text


def test_evaluate_subcommand_reaches_the_harness(capsys):
    """`python -m gptoss_edu evaluate` is the harness's own CLI (chapter 16): --help lists its
    options, and a bad argument is an argparse error (exit 2), not a traceback."""
    import pytest

    from gptoss_edu.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--help"])
    assert e.value.code == 0
    assert "--effort" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--tiny", "--effort", "extreme"])
    assert e.value.code == 2
