"""The chapter-16 forgetting experiment's data: answers, missing analysis, mixing share."""

import dataclasses

import pytest
import torch

from gptoss_edu import harmony
from gptoss_edu.posttrain import forgetting as fg
from gptoss_edu.posttrain.data import Problem


def test_echo_answers_are_right_by_an_independent_check():
    train, heldout = fg.echo_problems(seed=0, n_train=300, n_heldout=40)
    assert len(train) == 300 and len(heldout) == 40
    assert not set(train) & set(heldout)
    for p in train + heldout:
        # independent: the question's text after the colon, as typed
        assert p.question.startswith("Repeat the words: ")
        assert p.answer == p.question.split(": ", 1)[1]
        assert len(p.words) in fg.LENGTHS and len(set(p.words)) == len(p.words)
    # hand-checked
    assert fg.Echo(("open", "file", "list")).answer == "open file list"
    assert fg.Echo(("open", "file", "list")).question == "Repeat the words: open file list"


def test_echo_splits_are_seeded_and_heldout_does_not_depend_on_n_train():
    a = fg.echo_problems(seed=1, n_train=50, n_heldout=10)
    assert a == fg.echo_problems(seed=1, n_train=50, n_heldout=10)
    assert a[1] == fg.echo_problems(seed=1, n_train=0, n_heldout=10)[1]
    assert a != fg.echo_problems(seed=2, n_train=50, n_heldout=10)


def test_words_are_single_tokens_of_the_tiny_tokenizer():
    from gptoss_edu.posttrain.reasoner import digit_tokenizer
    from gptoss_edu.tiny import load_tiny_tokenizer

    tok = digit_tokenizer(load_tiny_tokenizer())
    for w in fg.WORDS:
        assert len(tok.encode_ordinary(w)) == 1, w
        assert len(tok.encode_ordinary(" " + w)) == 1, w


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_new_skill_conversations_have_no_analysis(effort):
    p = fg.Echo(("key", "item", "node", "path"))
    conv = fg.echo_conversation(p, effort)
    assistant = [m for m in conv if m.role == "assistant"]
    assert [m.channel for m in assistant] == ["final"]
    assert assistant[0].text == "key item node path"
    assert conv[0].content.reasoning_effort == effort
    rendered = harmony.render(conv, for_training=True, auto_drop_analysis=False)
    assert f"Reasoning: {effort}" in rendered
    assert "<|channel|>analysis" not in rendered
    kept = fg.echo_conversation(p, effort, with_analysis=True)
    assert [m.channel for m in kept if m.role == "assistant"] == ["analysis", "final"]
    assert "<|channel|>analysis" in harmony.render(
        kept, for_training=True, auto_drop_analysis=False
    )


def test_keep_analysis_names_the_words_in_order():
    p = fg.Echo(("open", "file", "list"))
    assert fg.echo_analysis(p, "high") == (
        "There are 3 words: word 1 is open, word 2 is file, word 3 is list. So open file list."
    )
    assert fg.echo_analysis(p, "medium") == "3 words; repeat them in order."
    assert fg.echo_analysis(p, "low") == "Answer directly."


@pytest.mark.parametrize(
    "batch, share, n", [(16, 0.25, 4), (16, 0.0, 0), (8, 0.5, 4), (4, 0.01, 1)]
)
def test_mix_count(batch, share, n):
    assert fg.mix_count(batch, share) == n


def test_mixing_share_is_what_it_says():
    train, _ = fg.echo_problems(seed=0, n_train=200, n_heldout=10)
    arith = [Problem("+", 12, 34), Problem("*", 21, 43), Problem("-", 5, 900)]
    for recipe, share, want in (("mix", 0.25, 4), ("mix", 0.5, 8), ("naive", 0.25, 0)):
        cfg = fg.ForgetConfig(recipe=recipe, batch_size=16, mix_share=share)
        for step in range(5):
            batch = fg.examples_at(step, cfg, train, arith)
            kinds = [k for k, _ in batch]
            assert len(batch) == 16 and kinds.count("reasoning") == want
            for kind, conv in batch:
                channels = [m.channel for m in conv if m.role == "assistant"]
                if kind == "reasoning":  # chapter-15 data keeps its analysis
                    assert channels == ["analysis", "final"]
                    assert conv[-2].text.split()[0] in {
                        "Add",
                        "Subtract",
                        "Answer",
                        "Multiply",
                    } or ("=" in conv[-2].text)
                else:
                    assert channels == ["final"]


def test_recipes_see_the_same_new_skill_questions():
    train, _ = fg.echo_problems(seed=0, n_train=200, n_heldout=10)
    arith = [Problem("+", 12, 34)]
    naive = fg.examples_at(3, fg.ForgetConfig(recipe="naive", batch_size=16), train, arith)
    mix = fg.examples_at(3, fg.ForgetConfig("mix", batch_size=16, mix_share=0.25), train, arith)
    keep = fg.examples_at(3, fg.ForgetConfig("keep_analysis", batch_size=16), train, arith)
    user = [[m.text for m in conv if m.role == "user"] for _, conv in naive]
    assert [[m.text for m in c if m.role == "user"] for k, c in mix if k == "new"] == user[:12]
    assert [[m.text for m in c if m.role == "user"] for _, c in keep] == user


def test_mixed_step_equals_one_padded_batch():
    """Padding each group on its own gives the same loss and gradients as one batch."""
    import gptoss_edu as ge
    from gptoss_edu.posttrain.data import conversation
    from gptoss_edu.posttrain.reasoner import digit_tokenizer
    from gptoss_edu.posttrain.sft import make_batch, render_with_mask, sft_loss
    from gptoss_edu.tiny import load_tiny_tokenizer

    tok = digit_tokenizer(load_tiny_tokenizer())
    torch.manual_seed(0)
    model = ge.GptOss(dataclasses.replace(ge.ModelConfig.tiny(), num_hidden_layers=1))
    convs = [fg.echo_conversation(fg.Echo(("key", "item", "node")), "low")]
    convs.append(fg.echo_conversation(fg.Echo(("open", "file", "list", "self")), "high"))
    arith = [conversation(Problem("+", 48, 7), "high")]
    new = [render_with_mask(c, tok) for c in convs]
    mix = [render_with_mask(c, tok) for c in arith]
    x, y, w = make_batch(new + mix)
    ref = sft_loss(model, x, y, w)
    ref.backward()
    ref_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()

    class NoStep:
        def zero_grad(self, set_to_none=True):
            pass

        def step(self):
            pass

    got = fg._step(model, NoStep(), [new, mix], grad_clip=0.0)
    got_grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert got == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="recipe='lora'"):
        fg.ForgetConfig(recipe="lora")
    with pytest.raises(ValueError, match="mix_share"):
        fg.ForgetConfig(mix_share=1.5)
    with pytest.raises(ValueError, match="effort='max'"):
        fg.echo_conversation(fg.Echo(("key",)), "max")
    with pytest.raises(ValueError, match="letters only"):
        fg.Echo(("two words",))
    with pytest.raises(ValueError, match="share=2"):
        fg.mix_count(16, 2)


def test_reasoning_summary_counts_empty_analysis():
    from gptoss_edu.evaluate import Report, TaskResult

    def r(analysis, correct, effort="high"):
        return TaskResult("q", "+", effort, "1", "1", correct, analysis, 1, 0, 0.1)

    rep = Report(
        [], [r(0, False), r(10, True), r(20, True), r(0, True), r(5, True, "low")], {}, 0, ""
    )
    s = fg.reasoning_summary(rep, "high")
    assert s == {
        "n": 4,
        "correct": 3,
        "accuracy": 0.75,
        "mean_analysis_tokens": 7.5,
        "empty_analysis_share": 0.5,
    }
    with pytest.raises(ValueError, match="medium"):
        fg.reasoning_summary(rep, "medium")
