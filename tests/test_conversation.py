"""conversation.py: chat() streams the final channel from a scripted generator, parses the reply,
and runs end to end on a random tiny model; the CLI reads stdin and fails clearly."""

import io
import sys

import pytest

import gptoss_edu.generation
from gptoss_edu import conversation
from gptoss_edu import harmony as h
from gptoss_edu.tokenizer.bpe import train_bpe
from gptoss_edu.tokenizer.o200k import o200k_harmony

HARMONY_SPECIALS = [
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|channel|>",
    "<|return|>",
    "<|call|>",
    "<|constrain|>",
]


@pytest.fixture(scope="module")
def tok():
    return o200k_harmony()


def scripted_generate(script_ids, calls):
    def fake(model, prompt_tokens, max_new_tokens, temperature=1.0, top_p=1.0, top_k=None,
             stop_tokens=(), seed=None, on_token=None):  # fmt: skip
        calls.append(
            {
                "prompt": list(prompt_tokens),
                "stop": set(stop_tokens),
                "max_new_tokens": max_new_tokens,
            }
        )
        out = []
        for t in script_ids[:max_new_tokens]:
            out.append(t)
            on_token(t)
            if t in stop_tokens:
                break
        return out

    return fake


REPLY = "<|channel|>analysis<|message|>Add them.<|end|><|start|>assistant<|channel|>final<|message|>Olá: 2 + 2 = 4 🙂<|return|>"


def test_chat_streams_final_and_returns_messages(tok, monkeypatch):
    calls = []
    script = tok.encode(REPLY, allowed_special="all") + tok.encode("never reached")
    monkeypatch.setattr(gptoss_edu.generation, "generate", scripted_generate(script, calls))
    chunks = []
    msgs = conversation.chat(
        object(), tok, "What is 2 + 2?", reasoning="high", stream=chunks.append
    )
    assert "".join(chunks) == "Olá: 2 + 2 = 4 🙂\n"
    assert msgs == [
        h.Message("assistant", "Add them.", channel="analysis"),
        h.Message("assistant", "Olá: 2 + 2 = 4 🙂", channel="final"),
    ]
    # the prompt is the harmony rendering with the reasoning effort; stops at <|return|>/<|call|>
    want_prompt = tok.encoding.encode(
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n\nReasoning: high\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
        "<|start|>user<|message|>What is 2 + 2?<|end|><|start|>assistant",
        allowed_special="all",
    )
    assert calls[0]["prompt"] == want_prompt
    assert calls[0]["stop"] == {200002, 200012}


def test_chat_show_analysis_and_token_by_token_utf8(tok, monkeypatch):
    # feed the reply byte-token by byte-token: multi-byte characters arrive in pieces
    head, tail = REPLY.split("Olá")
    ids = tok.encode(head, allowed_special="all")
    ids += [tok.encoding.encode_single_token(bytes([b])) for b in "Olá".encode()]  # "á" = 2 tokens
    ids += tok.encode(tail, allowed_special="all")
    monkeypatch.setattr(gptoss_edu.generation, "generate", scripted_generate(ids, []))
    chunks = []
    conversation.chat(object(), tok, [h.user("2+2?")], show_analysis=True, stream=chunks.append)
    assert "".join(chunks) == "[analysis] Add them.\nOlá: 2 + 2 = 4 🙂\n"
    assert all("\ufffd" not in c for c in chunks)


def test_chat_tool_call_and_truncated_output(tok, monkeypatch):
    call = '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Porto"}<|call|>'
    monkeypatch.setattr(
        gptoss_edu.generation,
        "generate",
        scripted_generate(tok.encode(call, allowed_special="all"), []),
    )
    msgs = conversation.chat(object(), tok, "Weather in Porto?", stream=None)
    assert msgs == [h.tool_call("get_weather", '{"city": "Porto"}')]
    truncated = tok.encode("<|channel|>final<|message|>It is", allowed_special="all")
    monkeypatch.setattr(gptoss_edu.generation, "generate", scripted_generate(truncated, []))
    r = conversation.chat(object(), tok, "Hi", stream=None)
    assert not r.complete and r.messages == [h.Message("assistant", "It is", channel="final")]
    assert r == [h.Message("assistant", "It is", channel="final")] and r.final == "It is"
    assert any("ended inside a message" in e for e in r.errors)
    with pytest.warns(DeprecationWarning, match="return_result"):
        old = conversation.chat(object(), tok, "Hi", stream=None, return_result=True)
    assert type(old) is type(r) and old == r and old.errors == r.errors


def test_chat_smoke_on_random_tiny_model():
    import gptoss_edu as ge

    cfg = ge.ModelConfig.tiny()
    small = train_bpe(
        "hello world, the tiny model says hi. " * 20,
        vocab_size=300,
        special_tokens=HARMONY_SPECIALS,
    )
    assert small.n_vocab <= cfg.vocab_size
    model = ge.GptOss(cfg)
    r = conversation.chat(model, small, "hello", max_new_tokens=6, temperature=0.0, stream=None)
    assert isinstance(r, conversation.ChatReply) and isinstance(r.errors, list)
    assert all(m.role == "assistant" for m in r)


def test_cli_missing_checkpoint(tmp_path, capsys):
    rc = conversation.cli(["chat", "--checkpoint", str(tmp_path / "nowhere")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "no such file" in err


def test_cli_reads_stdin_until_eof(tok, monkeypatch, capsys):
    script = tok.encode("<|channel|>final<|message|>Hi!<|return|>", allowed_special="all")
    calls = []
    monkeypatch.setattr(gptoss_edu.generation, "generate", scripted_generate(script, calls))
    monkeypatch.setattr(conversation, "_load", lambda args: (object(), tok))
    monkeypatch.setattr(sys, "stdin", io.StringIO("first\n\nsecond\n"))
    rc = conversation.cli(["--tiny", "--reasoning", "medium", "--max-new-tokens", "20"])
    assert rc == 0
    assert capsys.readouterr().out == "Hi!\nHi!\n"
    assert len(calls) == 2 and calls[1]["max_new_tokens"] == 20
    # the second prompt holds the first exchange
    second = tok.decode(calls[1]["prompt"])
    assert "Reasoning: medium" in second
    assert second.endswith(
        "<|start|>user<|message|>first<|end|><|start|>assistant<|channel|>final<|message|>Hi!<|end|>"
        "<|start|>user<|message|>second<|end|><|start|>assistant"
    )


@pytest.mark.parametrize("hidden, during", [(128, 1), (conversation.SMALL_MODEL_HIDDEN + 32, 3)])
def test_a_small_model_replies_on_one_torch_thread_and_torch_keeps_its_setting(
    tok, monkeypatch, hidden, during
):
    import types

    import torch

    seen = []

    def fake(model, prompt_tokens, max_new_tokens, **kw):
        seen.append(torch.get_num_threads())
        kw["on_token"](tok.encode("<|return|>", allowed_special="all")[0])
        return []

    monkeypatch.setattr(gptoss_edu.generation, "generate", fake)
    model = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=hidden))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        conversation.chat(model, tok, "hi", stream=None)
        assert seen == [during]  # 1 for a tiny model, torch's own 3 for a larger one
        assert torch.get_num_threads() == 3  # put back after the reply
        monkeypatch.setattr(gptoss_edu.generation, "generate", lambda *a, **k: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            conversation.chat(model, tok, "hi", stream=None)
        assert torch.get_num_threads() == 3  # and after an error
    finally:
        torch.set_num_threads(before)
