"""Hostile text-facing input: tokenizers, harmony, generation, chat, tools and the CLI.

One test per bad input. Each failed on the code before it (a crash deep inside: AttributeError,
UnicodeEncodeError, a json or torch error; or a silently wrong result) and now gets an error
that names the argument, what was found and what was expected. tests/test_bad_inputs_text.py
has the earlier list (float ids, out-of-range ids, surrogates in encode, header injection).
"""

import io
import json
import sys

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu import conversation, tools
from gptoss_edu import harmony as h
from gptoss_edu.generation import generate, sample_next
from gptoss_edu.tokenizer import o200k_harmony, train_bpe


@pytest.fixture(scope="module", params=["tiktoken", "python"])
def tok(request):
    return o200k_harmony(engine=request.param)


@pytest.fixture(scope="module")
def model():
    """A random 64-token model: the checks run before (or instead of) any real generation."""
    cfg = ge.ModelConfig.tiny().replace(num_hidden_layers=1, vocab_size=64)
    torch.manual_seed(0)
    return ge.GptOss(cfg).eval()


# ============================================================================ tokenizers


def test_allowed_special_as_a_lone_string_is_refused(tok):
    # set("<|start|>") is its characters: the tiktoken engine then refused <|start|> as
    # *disallowed*, and the python engine encoded disallowed_special="<|start|>" as plain text
    with pytest.raises(TypeError, match=r"allowed_special='<\|start\|>'; expected 'all' or a set"):
        tok.encode("<|start|>", allowed_special="<|start|>")
    with pytest.raises(TypeError, match=r"disallowed_special='<\|start\|>'"):
        tok.encode("<|start|>", disallowed_special="<|start|>")
    with pytest.raises(TypeError, match="allowed_special=None"):
        tok.encode("hi", allowed_special=None)
    assert tok.encode("<|start|>", allowed_special={"<|start|>"}) == [200006]


def test_train_bpe_on_lone_surrogates_like_encode():
    # encode turns a lone surrogate into U+FFFD (tiktoken's rule); training used to die with
    # UnicodeEncodeError on the same text
    bpe = train_bpe(["ab a\ud800b ab"], 260)
    assert bpe.decode(bpe.encode("a\ud800b")) == "a\ufffdb"


@pytest.mark.parametrize(
    "text, vocab_size, message",
    [
        (None, 260, "train_bpe: text is a NoneType"),
        (b"abc", 260, "train_bpe: text is a bytes"),
        (["abc", 5], 260, "train_bpe: document 1 is a int"),
        ("abc", "300", "train_bpe: vocab_size='300'; expected an int"),
        ("abc", float("nan"), "train_bpe: vocab_size=nan"),  # used to give 256 tokens silently
    ],
)
def test_train_bpe_bad_arguments(text, vocab_size, message):
    with pytest.raises(TypeError, match=message):
        train_bpe(text, vocab_size)


@pytest.mark.parametrize("name", ["", 5])
def test_special_token_names_must_be_non_empty_strings(name):
    # "" used to match between every character: encode("abc", allowed_special="all") came
    # back as [sp, a, sp, b, sp, c, sp]
    with pytest.raises(ValueError, match=r"special token .* expected a non-empty str"):
        train_bpe("abc abc", 260, special_tokens=[name])


# ============================================================================ harmony


def test_content_type_not_a_str():
    with pytest.raises(TypeError, match="render: content_type is a int; expected a str"):
        h.render([h.Message("assistant", "x", content_type=5)])


def test_developer_instructions_and_tools_of_the_wrong_type():
    with pytest.raises(TypeError, match="developer instructions: got a int; expected a str"):
        h.developer(5)  # used to fail at render: "sequence item 1: expected str instance"
    with pytest.raises(TypeError, match="developer tools: got a NoneType"):
        h.developer("x", tools=None)
    with pytest.raises(TypeError, match="developer tools: got a dict"):
        h.developer("x", tools={"name": "f"})  # one tool, not in a list
    assert h.developer("x", tools=(t for t in [h.Tool("f")])).content.tools[0].name == "f"


def test_render_something_that_is_not_a_conversation():
    with pytest.raises(TypeError, match="render: got a NoneType; expected a Conversation"):
        h.render(None)


def test_valid_channels_as_one_string():
    # used to render "# Valid channels: f, i, n, a, l."
    with pytest.raises(TypeError, match="valid_channels='final'; expected a tuple"):
        h.SystemContent(valid_channels="final")


@pytest.mark.parametrize(
    "prop, message",
    [
        ({5: {"type": "string"}}, "the key 5 is a int; JSON object keys are strings"),
        ({"a": {"type": "string", "default": {1}}}, r"\{1\} is a set"),
    ],
)
def test_tool_schema_that_is_not_json(prop, message):
    # accepted by Tool() before, then a regex or json TypeError when the tools were rendered
    with pytest.raises(TypeError, match=message):
        h.Tool("f", "d", {"type": "object", "properties": prop})


def test_tool_call_and_result_values_that_are_not_json():
    with pytest.raises(TypeError, match="tool_call 'f': the value is not JSON"):
        h.tool_call("f", {1, 2})
    with pytest.raises(TypeError, match="tool_result 'f': the value is not JSON"):
        h.tool_result("f", object())


def test_stream_parser_without_a_tokenizer_says_so():
    p = h.StreamParser(None)
    p.process(5)  # used to report "token id 5 is not in the vocabulary"
    assert any("no tokenizer" in e for e in p.finish().errors)


def test_parse_a_batch_tensor_and_bytes(tok):
    ids = h.render_tokens([h.user("hi")], tok, for_completion=False)
    r = h.parse(torch.tensor([ids]), tok)  # (1, T): one row is not one id
    assert r.errors and all("not an integer id" in e for e in r.errors)
    assert not any("internal parser error" in e for e in r.errors)
    r = h.parse(b"<|start|>user<|message|>hi<|end|>", tok)  # used to read the bytes as ids
    assert r.errors == ["parse: got bytes; decode them to str first (or pass token ids)"]


# ============================================================================ generation


@pytest.mark.parametrize("prompt", [None, 5])
def test_prompt_that_is_not_a_sequence(model, prompt):
    with pytest.raises(TypeError, match=r"prompt_tokens is a (NoneType|int); expected a list"):
        generate(model, prompt, 2)


@pytest.mark.parametrize("stop", [None, 5])
def test_stop_tokens_that_are_not_a_sequence(model, stop):
    with pytest.raises(TypeError, match=r"stop_tokens is a (NoneType|int); expected a list"):
        generate(model, [1, 2], 2, stop_tokens=stop)


def test_stop_tokens_the_model_cannot_emit(model):
    # o200k's ids with a 64-token model: generation used to run on, never stopping
    with pytest.raises(
        ValueError, match=r"stop_tokens \[200002, 200007, 200012\] not in .* 0\.\.63"
    ):
        generate(model, [1, 2], 2, stop_tokens=h.STOP_TOKENS)
    with pytest.raises(ValueError, match=r"stop_tokens \[-1\]"):
        generate(model, [1, 2], 2, stop_tokens=[-1])


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sample_next_on_a_matrix_of_logits(temperature):
    # greedy used to return an argmax over the flattened (T, V), an id up to T*V - 1
    with pytest.raises(ValueError, match=r"logits must be a tensor \(V,\).*found \(3, 10\)"):
        sample_next(torch.randn(3, 10), temperature)
    with pytest.raises(ValueError, match="found list"):
        sample_next([0.1, 0.2], temperature)


# ============================================================================ chat, tools, CLI


@pytest.mark.parametrize(
    "conv, message",
    [
        (["hi"], "chat: message 0 is a str"),
        ([h.user("a"), {"role": "user", "content": "hi"}], "chat: message 1 is a dict"),
        (b"hi", "chat: got bytes"),
    ],
)
def test_chat_conversation_of_non_messages(conv, message):
    with pytest.raises(TypeError, match=message):  # AttributeError: no attribute 'role' before
        conversation.chat(None, None, conv, stream=None)


def test_calculator_arguments_that_are_not_json():
    with pytest.raises(tools.CalculatorError, match=r"arguments .*expected exactly"):
        tools.calculator({1, 2})


def test_execute_call_with_a_recipient_that_is_not_a_str():
    reply = tools.execute_call(h.Message("assistant", "{}", recipient=5))
    assert "unknown tool" in json.loads(reply.text)["error"]


@pytest.mark.parametrize("bad", [None, h.user("hi")])
def test_run_agent_prompt_of_the_wrong_type(bad):
    with pytest.raises(TypeError, match=r"run_agent: got a (NoneType|Message); expected a prompt"):
        tools.run_agent(None, None, bad)


def test_cli_seed_too_big_for_torch(capsys):
    from gptoss_edu.__main__ import main

    big = str(2**70)  # "Overflow when unpacking long long" (chat: a traceback) before
    with pytest.raises(SystemExit) as e:
        main(["generate", "--tiny", "--prompt", "x", "--seed", big])
    assert (
        e.value.code == 2 and "--seed: expected an integer in [0, 2**64)" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as e:
        main(["chat", "--tiny", "--seed", big])
    assert e.value.code == 2 and "--seed: expected an integer" in capsys.readouterr().err


def test_chat_cli_stdin_that_is_not_utf8(monkeypatch, capsys):
    seen = []

    def fake_chat(model, tokenizer, messages, **kwargs):
        seen.append(messages[-1].text)
        return conversation.ChatReply([h.assistant("ok")], [], True)

    monkeypatch.setattr(conversation, "_load", lambda args: (object(), None))
    monkeypatch.setattr(conversation, "chat", fake_chat)
    stdin = io.TextIOWrapper(io.BytesIO(b"hi \xff there\n"), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert conversation.cli(["--tiny"]) == 0  # UnicodeDecodeError before
    assert seen == ["hi \ufffd there"]


def test_generate_seed_and_on_token_are_checked_before_any_work(model):
    # a float seed, one past torch's range, or a non-callable on_token got torch's own errors
    # (the last only after the whole prefill had run)
    forwards = []
    hook = model.register_forward_hook(lambda *a: forwards.append(1))
    try:
        with pytest.raises(TypeError, match=r"generate: seed must be None or an int; found 1\.5"):
            ge.generate(model, [1, 2], 2, seed=1.5)
        with pytest.raises(ValueError, match=r"seed must be an int in \[-2\*\*63, 2\*\*64\)"):
            ge.generate(model, [1, 2], 2, seed=2**64)
        with pytest.raises(TypeError, match=r"on_token must be a function .* found a list"):
            ge.generate(model, [1, 2], 2, on_token=[])
        with pytest.raises(ValueError, match=r"prompt_tokens\[1\] = 9223372036854775808 is far"):
            ge.generate(model, [1, 2**63], 2)
    finally:
        hook.remove()
    assert forwards == []
    assert (
        len(ge.generate(model, [1, 2], 2, seed=2**64 - 1, temperature=1.0)) == 2
    )  # the edges work
    assert len(ge.generate(model, [1, 2], 2, seed=-(2**63), temperature=1.0)) == 2


def test_chat_with_another_models_tokenizer_names_the_tokenizer(model, tok):
    # the o200k tokenizer with a 64-id model: "token id 200006 is out of range" named no tokenizer
    with pytest.raises(
        ValueError, match=r"chat: the tokenizer .* gave token id 2000\d\d, but this"
    ):
        conversation.chat(model, tok, "hi", stream=None, max_new_tokens=1)
