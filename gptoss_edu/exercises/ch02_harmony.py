"""Checkers for chapter 2's exercises (exercises/02_harmony.ipynb): rendering harmony messages,
the system message, a tool call, which messages a prompt keeps, parsing a reply, and the stop
tokens of an assistant turn.

    ge.exercises.check_render_message(my_render_message)   # ✅ check_render_message: passed

The references are the package's own `gptoss_edu.tokenizer.harmony` functions, which are tested
character by character against OpenAI's harmony format.
"""

from __future__ import annotations

import random

from ..tokenizer import harmony as h
from ..tokenizer.bpe import BPETokenizer
from ._common import Checker, ExerciseFailure, cases

__all__ = [
    "check_render_message",
    "check_system_message",
    "check_tool_call",
    "check_kept_messages",
    "check_parse_reply",
    "check_stop_tokens",
    "check_chat_turn",
]


WORDS = [
    "What",
    "is",
    "2 + 2?",
    "Olá",
    "weather",
    "in",
    "Lisbon",
    "naïve",
    "λ",
    "42",
    "ok",
    "{}",
    "\n",
]


def _text(rng, n_max: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, n_max)))


def _expect_str(got, expected: str, where: str) -> None:
    """Compare two renderings and point at the first character that differs."""
    if not isinstance(got, str):
        raise ExerciseFailure(f"{where} returned {type(got).__name__}; expected a str")
    if got == expected:
        return
    i = next((k for k in range(min(len(got), len(expected))) if got[k] != expected[k]), None)
    if i is None:
        i = min(len(got), len(expected))
    lo = max(0, i - 20)
    raise ExerciseFailure(
        f"{where}: first difference at character {i}: got ...{got[lo : i + 25]!r}, "
        f"expected ...{expected[lo : i + 25]!r}"
    )


@Checker("check_render_message")
def check_render_message(fn, seed=None):
    """fn(role, content, channel=None) -> "<|start|>ROLE<|channel|>CHANNEL<|message|>CONTENT<|end|>"."""
    visible = [
        ("user", "What is 2 + 2?", None),
        ("assistant", "Simple arithmetic.", "analysis"),
        ("assistant", "2 + 2 = 4.", "final"),
        ("developer", "Answer in Portuguese.", None),
    ]

    def draw(rng):
        role = rng.choice(["user", "assistant", "developer"])
        channel = (
            rng.choice([None, "analysis", "commentary", "final"]) if role == "assistant" else None
        )
        return role, _text(rng), channel

    for role, content, channel in cases(visible, seed, draw):
        got = fn(role, content, channel)
        expected = h.render([h.Message(role, content, channel=channel)], for_completion=False)
        where = f"fn({role!r}, {content!r}, {channel!r})"
        if isinstance(got, str) and got != expected:
            if got.endswith(h.RETURN):
                raise ExerciseFailure(
                    f"{where} ends with <|return|>; a message in a conversation ends with <|end|> "
                    "(<|return|> is only what the model emits when it finishes its answer)"
                )
            if (
                channel
                and f"{h.MESSAGE}{h.CHANNEL}" in got
                or (channel and got.find(h.CHANNEL) > got.find(h.MESSAGE))
            ):
                raise ExerciseFailure(
                    f"{where}: the channel belongs to the header, before <|message|>: {expected!r}"
                )
            if channel is None and h.CHANNEL in got:
                raise ExerciseFailure(
                    f"{where}: a message without a channel has no <|channel|> marker at all"
                )
            if got.replace(" ", "") == expected.replace(" ", ""):
                raise ExerciseFailure(
                    f"{where}: extra or missing spaces; no space goes around the special tokens: "
                    f"{expected!r}"
                )
        _expect_str(got, expected, where)
    return "start, header, message, end"


@Checker("check_system_message")
def check_system_message(fn, seed=None):
    """fn(reasoning_effort, current_date=None) -> the whole rendered system message."""

    def draw(rng):
        date = f"20{rng.randint(24, 30)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        return rng.choice(["low", "medium", "high"]), rng.choice([None, date])

    for effort, date in cases(
        [("low", None), ("high", "2025-06-28"), ("medium", None)], seed, draw
    ):
        got = fn(effort, date)
        expected = h.render(
            [h.system(reasoning_effort=effort, current_date=date)], for_completion=False
        )
        where = f"fn({effort!r}, {date!r})"
        if isinstance(got, str) and got != expected:
            if f"Reasoning: {effort.capitalize()}" in got:
                raise ExerciseFailure(f"{where}: the effort is lower-case: 'Reasoning: {effort}'")
            if "None" in got:
                raise ExerciseFailure(
                    f"{where}: 'None' appears in the text; leave the Current date line out "
                    "when no date is given"
                )
            if date and "Current date" not in got:
                raise ExerciseFailure(
                    f"{where}: the 'Current date: {date}' line is missing (it comes right after the "
                    "knowledge cutoff)"
                )
            if "Channel must be included for every message." not in got:
                raise ExerciseFailure(
                    f"{where}: the channels line must read '# Valid channels: analysis, commentary, "
                    "final. Channel must be included for every message.'"
                )
            body = got.split(h.MESSAGE, 1)[-1]
            exp_body = expected.split(h.MESSAGE, 1)[-1]
            got_lines, exp_lines = body.split("\n"), exp_body.split("\n")
            for k, (a, b) in enumerate(zip(got_lines, exp_lines)):
                if a != b:
                    raise ExerciseFailure(
                        f"{where}: line {k + 1} of the content is {a!r}; expected {b!r} (sections "
                        "are separated by one blank line)"
                    )
        _expect_str(got, expected, where)
    return "identity, cutoff, date, reasoning effort and channels, line by line"


@Checker("check_tool_call")
def check_tool_call(fn, seed=None):
    """fn(name, arguments: dict) -> the assistant's rendered call of functions.NAME."""

    def draw(rng):
        name = rng.choice(["lookup", "get_time", "search_docs", "convert"])
        keys = rng.sample(["city", "n", "query", "unit", "units", "page"], rng.randint(1, 3))
        return name, {k: rng.choice([rng.randint(-5, 99), _text(rng, 2), True]) for k in keys}

    visible = [("get_weather", {"location": "Lisbon"}), ("add", {"a": 2, "b": 3})]
    for name, args in cases(visible, seed, draw):
        got = fn(name, dict(args))
        expected = h.render([h.tool_call(name, args)], for_completion=False)
        where = f"fn({name!r}, {args})"
        if isinstance(got, str) and got != expected:
            if got.endswith(h.END) or got.endswith(h.RETURN):
                raise ExerciseFailure(
                    f"{where}: a tool call ends with <|call|>, not {got[-7:] if got.endswith(h.END) else got[-10:]}; "
                    "<|call|> is the stop token that hands control to your code"
                )
            if f"to=functions.{name}" not in got:
                raise ExerciseFailure(
                    f"{where}: the recipient is 'to=functions.{name}' (the namespace the developer "
                    "message declares, then the function)"
                )
            if f"{h.CHANNEL}commentary" not in got:
                raise ExerciseFailure(
                    f"{where}: tool calls go on the commentary channel: <|channel|>commentary"
                )
            if f"{h.CONSTRAIN}json" not in got:
                raise ExerciseFailure(
                    f"{where}: the arguments are JSON; say so with ' <|constrain|>json' before "
                    "<|message|>"
                )
            if got.replace(" ", "") == expected.replace(" ", ""):
                raise ExerciseFailure(
                    f"{where}: spaces differ; write the arguments with json.dumps(arguments) "
                    "(default separators) and put one space before to= and before <|constrain|>"
                )
        _expect_str(got, expected, where)
    return "to=functions.NAME on commentary, JSON arguments, ended by <|call|>"


def _conversations():
    u1, a1 = h.user("What is 2 + 2?"), h.assistant("Simple arithmetic.", "analysis")
    f1, u2 = h.assistant("4"), h.user("And 3 + 5?")
    call = h.tool_call("get_weather", {"location": "Lisbon"})
    result = h.tool_result("get_weather", {"temperature": 21})
    think = h.assistant("I need the weather first.", "analysis")
    return {
        "a finished turn, then a new question": [u1, a1, f1, u2],
        "a finished turn": [u1, a1, f1],
        "a tool-call loop (no final answer yet)": [u1, think, call, result],
        "a tool-call loop that ended in a final answer": [u1, think, call, result, f1, u2],
        "no assistant message yet": [u1],
    }


def _random_conversation(rng) -> tuple[str, list]:
    """Finished turns (some with a tool loop), then a new question, an open loop, or nothing."""
    conv = []
    for _ in range(rng.randint(0, 2)):
        conv += [h.user(_text(rng)), h.assistant(_text(rng), "analysis")]
        if rng.random() < 0.5:
            conv += [h.tool_call("lookup", {"q": _text(rng, 2)}), h.tool_result("lookup", {"r": 1})]
            conv += [h.assistant(_text(rng), "analysis")]
        conv.append(h.assistant(_text(rng)))
    ending = rng.choice(["question", "open loop", "finished"])
    if ending == "question" or not conv:
        conv.append(h.user(_text(rng)))
    elif ending == "open loop":
        conv += [h.user(_text(rng)), h.assistant(_text(rng), "analysis")]
        conv += [h.tool_call("lookup", {"q": 1}), h.tool_result("lookup", {"r": 2})]
    return f"a conversation of {len(conv)} messages ending with {ending}", conv


@Checker("check_kept_messages")
def check_kept_messages(fn, seed=None):
    """fn(messages) -> the messages a prompt keeps: drop old analysis once a final answer exists."""
    for label, conv in cases(list(_conversations().items()), seed, _random_conversation):
        got = fn(list(conv))
        if not isinstance(got, list):
            raise ExerciseFailure(f"{label}: returned {type(got).__name__}; expected a list")
        expected = h.kept_messages(conv)
        if got == expected:
            continue
        dropped = [m for m in conv if m not in got]
        if dropped == []:
            raise ExerciseFailure(
                f"{label}: nothing was dropped; once the last assistant message is a final "
                "answer, the analysis before it is dropped"
            )
        if "loop (no final" in label and all(m.channel == "analysis" for m in dropped):
            raise ExerciseFailure(
                f"{label}: the analysis was dropped in the middle of a turn. While the last "
                "assistant message is not on the final channel, keep everything: the model needs "
                "its reasoning to continue after the tool's answer"
            )
        if any(m.channel != "analysis" for m in dropped):
            kinds = sorted({f"{m.role}/{m.channel}" for m in dropped if m.channel != "analysis"})
            raise ExerciseFailure(
                f"{label}: you dropped {kinds}; only analysis messages are dropped (tool calls, "
                "tool results and answers stay)"
            )
        raise ExerciseFailure(
            f"{label}: kept {[(m.role, m.channel) for m in got]}; expected "
            f"{[(m.role, m.channel) for m in expected]}"
        )
    return "analysis of finished turns dropped, tool-call loops kept whole"


REPLIES = [
    "<|channel|>analysis<|message|>Easy: 2 + 2 = 4.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>4<|return|>",
    "<|channel|>final<|message|>Olá!<|return|>",
    "<|channel|>analysis<|message|>Need the weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"location": "Lisbon"}<|call|>',
    "<|channel|>analysis<|message|>Line one.\nLine two.<|end|>"
    "<|start|>assistant<|channel|>commentary<|message|>Let me check.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Done.<|return|>",
]


def _random_reply(rng) -> str:
    parts = []
    for _ in range(rng.randint(0, 2)):
        channel = rng.choice(["analysis", "commentary"])
        parts.append(f"{h.CHANNEL}{channel}{h.MESSAGE}{_text(rng)}{h.END}")
    if rng.random() < 0.5:
        header = f"{h.CHANNEL}commentary to=functions.lookup {h.CONSTRAIN}json"
        parts.append(f'{header}{h.MESSAGE}{{"q": "{rng.choice(WORDS[:8])}"}}{h.CALL}')
    else:
        parts.append(f"{h.CHANNEL}final{h.MESSAGE}{_text(rng)}{h.RETURN}")
    return f"{h.START}assistant".join(parts)


@Checker("check_parse_reply")
def check_parse_reply(fn, seed=None):
    """fn(text) -> [(channel, content), ...] for a reply that continues "<|start|>assistant"."""
    for text in cases(REPLIES, seed, _random_reply):
        got = fn(text)
        if isinstance(got, tuple):
            got = list(got)
        if not isinstance(got, list):
            raise ExerciseFailure(
                f"returned {type(got).__name__}; expected a list of (channel, content)"
            )
        got = [tuple(x) for x in got]
        result = h.parse(text, role="assistant")
        expected = [(m.channel, m.text) for m in result.messages]
        if got == expected:
            continue
        where = f"fn({text[:50]!r}...)"
        flat = " ".join(" ".join(map(str, x)) for x in got)
        if any(t in flat for t in h.END_TOKENS):
            raise ExerciseFailure(
                f"{where} = {got}: an end token is inside a content; <|end|>, <|return|> and "
                "<|call|> all end a message and are not part of it"
            )
        if any(" to=" in str(c) or h.CONSTRAIN in str(c) for c, _ in got):
            raise ExerciseFailure(
                f"{where}: a channel {[c for c, _ in got]} holds the rest of the header; the channel "
                "is only the word after <|channel|> (stop at a space or '<')"
            )
        if len(got) == len(expected) - 1 and got == expected[1:]:
            raise ExerciseFailure(
                f"{where}: the first message is missing; the reply starts in the middle of a header "
                "(the prompt already wrote '<|start|>assistant'), so it has no <|start|> of its own"
            )
        raise ExerciseFailure(f"{where} = {got}; expected {expected}")
    return "channels and contents read back from the reply"


def _toy_tokenizer(rng=None) -> BPETokenizer:
    """A 256-byte vocabulary whose harmony tokens have ids other than o200k's (shuffled by rng)."""
    names = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>"]
    names.append("<|constrain|>")
    if rng is not None:
        rng.shuffle(names)
    specials = {n: 256 + k for k, n in enumerate(names)}
    return BPETokenizer({bytes([b]): b for b in range(256)}, specials, name="toy")


@Checker("check_stop_tokens")
def check_stop_tokens(fn, seed=None):
    """fn(tokenizer) -> the ids that end an assistant turn: {<|return|>, <|call|>}."""
    from ..tokenizer.o200k import o200k_harmony

    toks = [o200k_harmony(), _toy_tokenizer()]
    for tok in cases(toks, seed, lambda rng: _toy_tokenizer(rng), n=2):
        got = fn(tok)
        if not isinstance(got, (set, frozenset, list, tuple)):
            raise ExerciseFailure(f"returned {type(got).__name__}; expected a set of ids")
        got = {int(i) for i in got}
        ret, end, call = (tok.token_id(n) for n in (h.RETURN, h.END, h.CALL))
        expected = {ret, call}
        if got == expected:
            continue
        if tok.name == "toy" and got & {200002, 200007, 200012}:
            raise ExerciseFailure(
                f"for a tokenizer whose <|return|> is {ret}, you returned {sorted(got)}: o200k's ids "
                "are hard-coded. Look them up by name with tokenizer.token_id('<|return|>')"
            )
        if end in got:
            raise ExerciseFailure(
                f"{sorted(got)} includes <|end|> ({end}); <|end|> closes the analysis message, so "
                "generation would stop before the answer is written"
            )
        if call not in got:
            raise ExerciseFailure(
                f"<|call|> ({call}) is missing: after a tool call the model would run on and "
                "invent the tool's answer itself"
            )
        if ret not in got:
            raise ExerciseFailure(f"<|return|> ({ret}) is missing: it ends the final answer")
        raise ExerciseFailure(f"{sorted(got)}; expected {sorted(expected)}")
    return "<|return|> ends an answer, <|call|> hands over to a tool"


# ---- extension: a chat loop ----------------------------------------------------------------------


def _scripted_model(rng, prompts: list[str]):
    """A stand-in for gpt-oss: records each prompt, answers with some analysis, then a final."""

    def model(prompt: str) -> str:
        prompts.append(prompt)
        parts = [f"{h.CHANNEL}analysis{h.MESSAGE}{_text(rng)}{h.END}"]
        parts.append(f"{h.CHANNEL}final{h.MESSAGE}answer {len(prompts)}: {_text(rng)}{h.RETURN}")
        return f"{h.START}assistant".join(parts)

    return model


def _triples(messages) -> list[tuple]:
    return [(m.role, m.channel, m.text) for m in messages]


@Checker("check_chat_turn")
def check_chat_turn(fn, seed=None):
    """fn(history, user_text, model) -> (new_history, answer): one turn of a harmony chat, where
    model(prompt_text) returns the text the model writes after the prompt."""
    for run in cases([0, 1], seed, lambda rng: rng.randrange(2**31), n=2):
        rng, ref_rng = random.Random(run), random.Random(run)
        got_prompts: list[str] = []
        ref_prompts: list[str] = []
        model, ref_model = _scripted_model(rng, got_prompts), _scripted_model(ref_rng, ref_prompts)
        history = ref_history = [h.system(reasoning_effort="low")]
        questions = [_text(random.Random(run + t)) for t in range(3)]
        for turn, question in enumerate(questions):
            ref_history = ref_history + [h.user(question)]
            reply = ref_model(h.render(ref_history))
            parsed = h.parse(reply, role="assistant").messages
            ref_history = ref_history + parsed
            ref_answer = parsed[-1].text
            out = fn(list(history), question, model)
            if not isinstance(out, tuple) or len(out) != 2:
                raise ExerciseFailure("expected a tuple (new_history, answer)")
            history, answer = out
            prompt, want_prompt = got_prompts[turn], ref_prompts[turn]
            where = f"turn {turn + 1}"
            if prompt != want_prompt:
                if want_prompt.endswith(f"{h.START}assistant") and not prompt.endswith("assistant"):
                    raise ExerciseFailure(
                        f"{where}: the prompt must end with '<|start|>assistant', so that the "
                        "model writes the assistant's message"
                    )
                if turn > 0 and prompt.count("analysis") > want_prompt.count("analysis"):
                    raise ExerciseFailure(
                        f"{where}: the prompt still holds the analysis of an earlier, finished "
                        "turn; harmony drops it (your kept_messages, exercise 4)"
                    )
                _expect_str(prompt, want_prompt, f"{where}: the prompt")
            if not isinstance(answer, str) or answer != ref_answer:
                if isinstance(answer, str) and answer.startswith(ref_answer):
                    raise ExerciseFailure(
                        f"{where}: the answer {answer!r} keeps the end token; return the text only"
                    )
                raise ExerciseFailure(f"{where}: answer {answer!r}; expected {ref_answer!r}")
            if not isinstance(history, list) or _triples(history) != _triples(ref_history):
                raise ExerciseFailure(
                    f"{where}: the new history should be the old one, the user's message and "
                    f"every message of the reply: expected {_triples(ref_history)[-4:]} at its "
                    f"end, got {_triples(history)[-4:] if isinstance(history, list) else history}"
                )
    return "three turns: prompts, answers and history as harmony keeps them"
