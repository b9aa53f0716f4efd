"""A stand-in model that replays scripted replies (chapters 15 and 16).

To test an agent loop or an evaluation harness one needs a model whose outputs are known. This
one is driven by `ge.generate` / `ge.chat` like any GptOss: each new generation (a fresh KV
cache) starts the next scripted reply, and every step puts all the probability on that reply's
next token, so greedy decoding and sampling both reproduce the script exactly.

    model = ScriptedModel.from_texts(tok, ["<|channel|>final<|message|>5<|return|>"])
    ge.chat(model, tok, "What is 2 + 3?", temperature=0.0).final     # "5"
    model.prompts[0]                                                  # the ids it was given
"""

from __future__ import annotations

from types import SimpleNamespace

import torch


class ScriptedModel(torch.nn.Module):
    """Replays `replies` (lists of token ids), one per generation, in order."""

    def __init__(self, replies, vocab_size: int, max_context_length: int = 4096):
        super().__init__()
        self.replies = [list(map(int, r)) for r in replies]
        for i, r in enumerate(self.replies):
            bad = [t for t in r if not 0 <= t < vocab_size]
            if not r or bad:
                raise ValueError(
                    f"ScriptedModel: reply {i} is empty or has ids outside 0..{vocab_size - 1} "
                    f"({bad[:3]}); give non-empty lists of ids of the tokenizer"
                )
        self.config = SimpleNamespace(
            vocab_size=vocab_size, max_context_length=max_context_length, experts_per_token=1
        )
        self._anchor = torch.nn.Parameter(torch.zeros(1))  # generate() reads the device from it
        self.prompts: list[list[int]] = []  # what each generation was given

    @classmethod
    def from_texts(cls, tokenizer, texts, **kwargs) -> ScriptedModel:
        """Replies written as text, format tokens included ("<|channel|>final<|message|>...")."""
        replies = [tokenizer.encode(t, allowed_special="all") for t in texts]
        return cls(replies, vocab_size=tokenizer.n_vocab, **kwargs)

    @property
    def calls(self) -> int:
        """How many generations have started."""
        return len(self.prompts)

    def new_cache(self) -> dict:
        return {"reply": None, "i": 0}

    def check_tokens(self, tokens: torch.Tensor, offset: int = 0) -> None:
        if tokens.numel() and not (
            0 <= int(tokens.min()) and int(tokens.max()) < self.config.vocab_size
        ):
            raise ValueError(f"ScriptedModel: token ids outside 0..{self.config.vocab_size - 1}")

    def forward(self, tokens: torch.Tensor, cache: dict | None = None, recorder=None):
        if cache is None:
            raise ValueError("ScriptedModel needs a cache: call generate with use_cache=True")
        if cache["reply"] is None:  # prefill: the next scripted reply begins
            if self.calls >= len(self.replies):
                raise RuntimeError(
                    f"ScriptedModel: generation {self.calls + 1} asked for, but only "
                    f"{len(self.replies)} replies were scripted"
                )
            cache["reply"] = self.replies[self.calls]
            self.prompts.append(tokens.reshape(-1).tolist())
        reply, i = cache["reply"], cache["i"]
        token = reply[min(i, len(reply) - 1)]  # past the end: repeat the last token
        cache["i"] += 1
        logits = torch.full((tokens.shape[-1], self.config.vocab_size), -1e9)
        logits[-1, token] = 0.0
        return logits  # (T, V)


__all__ = ["ScriptedModel"]
