"""The evaluation harness of chapter 16 (gptoss_edu.evaluate), on a stand-in model whose
answers are known: the accuracy and the Wilson interval it reports are checked against counts
and interval values computed by hand."""

import json

import pytest

from gptoss_edu.evaluate import evaluate, main, wilson_interval
from gptoss_edu.posttrain.data import Problem
from gptoss_edu.posttrain.standin import ScriptedModel
from gptoss_edu.tiny import load_tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


def reply(final, analysis="Answer directly."):
    text = f"<|channel|>analysis<|message|>{analysis}<|end|>"
    if final is not None:
        text += f"<|start|>assistant<|channel|>final<|message|>{final}<|return|>"
    return text


def test_wilson_interval_matches_hand_computed_values():
    # 7/10: p = 0.7, z^2 = 3.8415; centre (0.7 + 0.19207) / 1.38415 = 0.64456,
    # half-width 1.95996 / 1.38415 * sqrt(0.021 + 0.0096037) = 0.24771
    assert wilson_interval(7, 10) == pytest.approx((0.39685, 0.89227), abs=1e-4)
    # 0/5: lower 0, upper z^2 / (n + z^2) = 3.8415 / 8.8415
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.43448), abs=1e-4)
    assert wilson_interval(5, 5) == pytest.approx((0.56552, 1.0), abs=1e-4)
    assert wilson_interval(50, 100) == pytest.approx((0.40383, 0.59617), abs=1e-4)
    with pytest.raises(ValueError, match="n=0"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="k=6"):
        wilson_interval(6, 5)


def test_harness_reports_the_right_accuracy(tok):
    adds = [Problem("+", a, 3) for a in range(10)]  # answers a + 3
    muls = [Problem("*", 10 + a, 11) for a in range(5)]
    problems = adds + muls
    # effort "low": adds 0..6 right, 7..9 wrong; muls all wrong (one has no final at all)
    low = [reply(a + 3 if a < 7 else a + 4) for a in range(10)]
    low += [reply((10 + a) * 11 + 1) for a in range(4)] + [reply(None)]
    # effort "high": every add right with a longer analysis, muls all right, one with spaces
    high = [reply(a + 3, analysis=f"{a} + 3 = {a + 3}, carry 0.") for a in range(10)]
    high += [reply((10 + a) * 11) for a in range(4)] + [reply(" 154 ")]
    model = ScriptedModel.from_texts(tok, low + high)
    report = evaluate(model, tok, problems, efforts=("low", "high"), max_new_tokens=64)
    assert model.calls == 30
    r = report.row("+", "low")
    assert (r.n, r.correct, r.accuracy) == (10, 7, 0.7)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.39685, 0.89227), abs=1e-4)
    r = report.row("*", "low")
    assert (r.n, r.correct, r.ci_low, r.ci_high) == (5, 0, 0.0, pytest.approx(0.43448, abs=1e-4))
    r = report.row("all", "low")
    assert (r.n, r.correct) == (15, 7)
    assert report.row("+", "high").correct == 10 and report.row("*", "high").correct == 5
    # token counts: the analysis texts above, counted by the tokenizer
    want = sum(len(tok.encode_ordinary(f"{a} + 3 = {a + 3}, carry 0.")) for a in range(10)) / 10
    assert report.row("+", "high").mean_analysis_tokens == pytest.approx(want)
    assert report.row("+", "low").mean_analysis_tokens == len(
        tok.encode_ordinary("Answer directly.")
    )
    wrong = [t for t in report.results if t.effort == "low" and not t.correct]
    assert [t.final for t in wrong][-1] is None and len(wrong) == 8
    assert report.peak_memory_mb > 0 and report.memory_kind
    table = report.table()
    assert "| + | low | 10 | 70.0% | [39.7%, 89.2%] |" in table
    data = json.loads(json.dumps(report.to_json()))
    assert data["rows"][0]["correct"] == 7 and data["settings"]["temperature"] == 0.0


def test_harness_with_tools_counts_calls(tok):
    call = (
        "<|channel|>analysis<|message|>Use the calculator.<|end|><|start|>assistant "
        "to=functions.calculator<|channel|>commentary <|constrain|>json<|message|>"
        '{"expression": "123 * 456"}<|call|>'
    )
    model = ScriptedModel.from_texts(tok, [call, reply(56088)[len(reply(None)) :]])
    report = evaluate(model, tok, [Problem("*", 123, 456)], efforts=("low",), use_tools=True)
    r = report.row("* (tool)", "low")
    assert (r.n, r.correct, r.tool_calls) == (1, 1, 1)


def test_bad_arguments_are_named(tok):
    model = ScriptedModel.from_texts(tok, [reply(1)])
    with pytest.raises(ValueError, match="no problems"):
        evaluate(model, tok, [])
    with pytest.raises(ValueError, match="effort 'max'"):
        evaluate(model, tok, [Problem("+", 1, 2)], efforts=("max",))
    with pytest.raises(TypeError, match=r"problems\[0\] is a str"):
        evaluate(model, tok, ["What is 1 + 2?"])
    with pytest.raises(SystemExit):
        main(["--tiny", "--n", "0"])


@pytest.mark.slow
def test_cli_on_the_tiny_model(tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = main(
        ["--tiny", "--n", "1", "--effort", "low", "--max-new-tokens", "4", "--json", str(out)]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert [r["group"] for r in data["rows"]] == ["+", "-", "*", "all"]
    assert "| all | low | 3 |" in capsys.readouterr().out
