"""Where a fine-tuned model's loss is: the trained tokens of a high-effort answer, by role
(chapter 15).

A mean loss says how wrong a model is, not what it has not learned. A high-effort answer is
made of tokens with very different jobs: the format (words, punctuation, harmony tokens), digits
copied from the question, digits read off the line above, and digits that are arithmetic (a
column sum, a product). Tagging each trained token with its role and averaging the loss per role
says which skill is missing. A digit the model knows nothing about costs ln 10 = 2.303 nats
(a uniform guess among ten digits).

    rows = loss_by_role(model, tok, heldout_problems(0, n=20))    # {role: (mean nats, count)}
    tokens = token_losses(model, tok, conversation(p, "high"))   # [(text, nats, role), ...]

Roles are assigned from the text of the chapter-15 analysis formats (gptoss_edu.posttrain.data)
by the regular expressions below, character by character; a token takes the role of its first
character.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from gptoss_edu.posttrain.sft import render_with_mask

ROLES = (
    "format",  # every trained token that is not a digit
    "digit copied from the question",
    "digit read off the line above",
    "digit of an arithmetic result",
    "digit copied within the line",
    "digit of the result so far",
    "digit of the operands left",
    "digit of the final answer",
)
CHANCE = math.log(10)  # nats of a uniform guess among the ten digits

_D = r"(\d+)"
# one pattern per line shape: (regex, role of each group in order)
_LINES = [
    (
        re.compile(
            rf"^{_D} [-+*] {_D}(?: [-+*] {_D})? = {_D}, write {_D} carry {_D}, so far {_D}, "
            rf"left {_D} [-+] {_D}$"
        ),
        ("above", "above", "above", "arith", "within", "within", "sofar", "left", "left"),
    ),
    (
        re.compile(rf"^{_D} - {_D} - {_D} = {_D}, borrow {_D}, so far {_D}, left {_D} - {_D}$"),
        ("above", "above", "above", "arith", "arith", "sofar", "left", "left"),
    ),
    (re.compile(rf"^final carry {_D}, so far {_D}$"), ("above", "sofar")),
    (re.compile(rf"^{_D} [-+*] {_D}$"), ("question", "question")),
    (re.compile(rf"^So {_D} [-+*] {_D} = (-?\d+)\.$"), ("question", "question", "final")),
    (
        re.compile(rf"^So {_D} - {_D} = {_D}, and {_D} - {_D} = (-?\d+)\.$"),
        ("question", "question", "final", "question", "question", "final"),
    ),
]
_NAMES = {
    "question": ROLES[1],
    "above": ROLES[2],
    "arith": ROLES[3],
    "within": ROLES[4],
    "sofar": ROLES[5],
    "left": ROLES[6],
    "final": ROLES[7],
}
_MUL_STEP = re.compile(r"(\d+) \* (\d)(?: \+ (\d+))? = (\d+)")


def char_roles(text: str) -> list[str | None]:
    """The role of each character of an analysis (None for non-digits); digits of lines with
    no known shape (the first sentence, a product line) are "copied from the question" unless
    they follow "=", which makes them arithmetic."""
    roles: list[str | None] = [None] * len(text)
    start = 0
    for line in text.split("\n"):
        for pattern, groups in _LINES:
            m = pattern.match(line)
            if m:
                for g, role in enumerate(groups, 1):
                    for i in range(m.start(g), m.end(g)):
                        roles[start + i] = _NAMES[role]
                break
        else:
            for i, ch in enumerate(line):
                if ch.isdigit():
                    roles[start + i] = _NAMES["question"]
            for m in _MUL_STEP.finditer(line):  # "9 * 3 + 2 = 29" inside a product line
                for g, role in ((1, "above"), (2, "above"), (3, "within"), (4, "arith")):
                    if m.group(g):
                        for i in range(m.start(g), m.end(g)):
                            roles[start + i] = _NAMES[role]
            for m in re.finditer(r"so (\d+)", line):
                for i in range(m.start(1), m.end(1)):
                    roles[start + i] = _NAMES["within"]
        start += len(line) + 1
    return roles


@torch.no_grad()
def token_losses(model, tokenizer, messages) -> list[tuple[str, float, str]]:
    """(token text, loss in nats, role) of every trained token of a rendered conversation."""
    ids, mask = render_with_mask(messages, tokenizer)
    analysis = next(
        (m.text for m in messages if m.role == "assistant" and m.channel == "analysis"), ""
    )
    roles = char_roles(analysis)
    model.eval()
    logits = model(torch.tensor([ids[:-1]]))[0].float()  # (T-1, V)
    nats = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    # find the analysis text in the decoded tokens to map characters to tokens
    texts = [tokenizer.decode([i]) for i in ids]
    joined = "".join(texts)
    a0 = joined.find(analysis) if analysis else -1
    out, pos = [], 0  # pos: where token t starts in `joined`
    for t in range(1, len(ids)):
        pos += len(texts[t - 1])
        if not mask[t]:
            continue
        s = texts[t]
        if not any(c.isdigit() for c in s):
            role = ROLES[0]
        elif 0 <= a0 <= pos < a0 + len(analysis):
            role = roles[pos - a0] or ROLES[1]
        else:
            role = ROLES[7]  # digits outside the analysis: the final answer
        out.append((s, float(nats[t - 1]), role))
    return out


def loss_by_role(model, tokenizer, problems, effort: str = "high") -> dict[str, tuple[float, int]]:
    """{role: (mean loss in nats, number of tokens)} over the problems' conversations."""
    from gptoss_edu.posttrain.data import conversation

    sums: dict[str, list[float]] = {r: [] for r in ROLES}
    for p in problems:
        for _, nats, role in token_losses(model, tokenizer, conversation(p, effort)):
            sums[role].append(nats)
    return {r: (sum(v) / len(v), len(v)) for r, v in sums.items() if v}


@torch.no_grad()
def repeat_test(model, tokenizer, n: int = 8, length: int = 24, seed: int = 0) -> dict[str, float]:
    """Can the model copy? The mean loss on a random digit string the first time it appears and
    the second time (`x = S` then `y = S`), over n strings.

    A model with induction heads (attention that finds the earlier copy and reads the token
    after it) predicts the second copy almost for free; a model without pays about as much
    twice. Every copy in a worked answer (the operands, the result so far) needs that skill.
    """
    import random

    rng = random.Random(f"gptoss_edu.posttrain.diagnose/{seed}")
    first, second = [], []
    model.eval()
    for _ in range(n):
        s = "".join(rng.choice("0123456789") for _ in range(length))
        head = tokenizer.encode_ordinary(f"x = {s}\n")
        ids = head + tokenizer.encode_ordinary(f"y = {s}\n")
        logits = model(torch.tensor([ids[:-1]]))[0].float()
        nats = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
        # the digits only: positions of S in each line (after "x = " / "y = ", before "\n")
        k = len(tokenizer.encode_ordinary("x = "))
        first.append(nats[k - 1 : len(head) - 2].mean().item())
        second.append(nats[len(head) + k - 1 : len(ids) - 2].mean().item())
    return {"first": sum(first) / n, "second": sum(second) / n, "chance": CHANCE}


__all__ = ["CHANCE", "ROLES", "char_roles", "loss_by_role", "repeat_test", "token_losses"]
