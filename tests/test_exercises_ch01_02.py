"""Chapter 1 and 2 checkers: a correct answer passes; each classic mistake fails with words
that name it. The correct answers here are written independently of the checkers' references
(harmony strings typed by hand, BPE cases worked out on paper)."""

import json
from collections import Counter

import pytest
import regex

from gptoss_edu import exercises as ex
from gptoss_edu.tokenizer import harmony as h


def run(checker, fn, capsys):
    ok = checker(fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one line, always
    return ok, out


def passes(checker, fn, capsys):
    ok, out = run(checker, fn, capsys)
    assert ok is True and out.startswith(f"✅ {checker.__name__}: passed"), out


def fails(checker, fn, capsys, *words):
    ok, out = run(checker, fn, capsys)
    assert ok is False and out.startswith("❌"), out
    for w in words:
        assert w in out, f"{w!r} not in {out!r}"


def test_unfinished_exercise_says_not_done(capsys):
    def todo(*args):
        raise NotImplementedError("count the pairs")

    ok, out = run(ex.check_pair_counts, todo, capsys)
    assert ok is False and out.startswith("⏳") and "count the pairs" in out


# ---- chapter 1 ------------------------------------------------------------------------------


def pair_counts(ids):
    return dict(Counter(zip(ids, ids[1:])))


def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if ids[i : i + 2] == list(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train(text, n_merges):
    ids, merges = list(text.encode()), {}
    for k in range(n_merges):
        counts = pair_counts(ids)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges[pair] = 256 + k
        ids = merge(ids, pair, 256 + k)
    return merges


def encode(text, merges):
    ids = list(text.encode())
    while True:
        pairs = [p for p in zip(ids, ids[1:]) if p in merges]
        if not pairs:
            return ids
        pair = min(pairs, key=merges.get)
        ids = merge(ids, pair, merges[pair])


def test_hand_worked_bpe_cases():
    # independent of both implementations: worked out on paper
    assert pair_counts([97, 97, 97]) == {(97, 97): 2}
    assert merge([97, 97, 97], (97, 97), 256) == [256, 97]
    # "aaabdaaabac": (97, 97) appears 4 times -> 256; then (256, 97) 2, (97, 98) 2, tie -> (97, 98)
    assert list(train("aaabdaaabac", 2)) == [(97, 97), (97, 98)]
    assert encode("abc", {(98, 99): 256, (97, 98): 257}) == [97, 256]


def test_pair_counts(capsys):
    passes(ex.check_pair_counts, pair_counts, capsys)
    fails(
        ex.check_pair_counts,
        lambda ids: dict(Counter(zip(ids[:-1], ids[1:-1]))),
        capsys,
        "misses the last pair",
    )

    def non_overlapping(ids):
        out, i = Counter(), 0
        while i + 1 < len(ids):
            out[(ids[i], ids[i + 1])] += 1
            i += 2 if ids[i] == ids[i + 1] else 1
        return dict(out)

    fails(ex.check_pair_counts, non_overlapping, capsys, "overlap")


def test_merge(capsys):
    passes(ex.check_merge, merge, capsys)

    def first_only(ids, pair, new_id):
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == pair:
                return ids[:i] + [new_id] + ids[i + 2 :]
        return ids

    fails(ex.check_merge, first_only, capsys, "first occurrence")

    def reuse(ids, pair, new_id):
        out = []
        for i, x in enumerate(ids):
            if i + 1 < len(ids) and (x, ids[i + 1]) == pair:
                out.append(new_id)
            elif not (i > 0 and (ids[i - 1], x) == pair):
                out.append(x)
        return out

    fails(ex.check_merge, reuse, capsys, "skip both ids")

    def drops_last(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    fails(ex.check_merge, drops_last, capsys, "last id was lost")


def test_train(capsys):
    passes(ex.check_train, train, capsys)

    def first_seen(text, n):
        ids, merges = list(text.encode()), {}
        for k in range(n):
            counts = pair_counts(ids)
            if not counts:
                break
            pair = max(counts, key=counts.get)
            merges[pair] = 256 + k
            ids = merge(ids, pair, 256 + k)
        return merges

    fails(ex.check_train, first_seen, capsys, "smallest pair")

    def no_recount(text, n):
        ids, merges = list(text.encode()), {}
        counts = pair_counts(ids)
        for k in range(n):
            counts = {p: c for p, c in counts.items() if p not in merges}
            if not counts:
                break
            pair = min(counts, key=lambda p: (-counts[p], p))
            merges[pair] = 256 + k
        return merges

    fails(ex.check_train, no_recount, capsys, "recount")
    fails(
        ex.check_train,
        lambda t, n: {p: 1000 + i for p, i in train(t, n).items()},
        capsys,
        "256 + k",
    )


def test_encode(capsys):
    passes(ex.check_encode, encode, capsys)

    def leftmost(text, merges):
        ids = list(text.encode())
        while True:
            pairs = [p for p in zip(ids, ids[1:]) if p in merges]
            if not pairs:
                return ids
            ids = merge(ids, pairs[0], merges[pairs[0]])

    fails(ex.check_encode, leftmost, capsys, "leftmost")
    fails(
        ex.check_encode,
        lambda t, m: [ord(c) for c in t] if not m else encode(t, m),
        capsys,
        "bytes",
    )


def test_decode(capsys):
    passes(
        ex.check_decode,
        lambda ids, v: b"".join(v[i] for i in ids).decode("utf-8", "replace"),
        capsys,
    )
    fails(
        ex.check_decode,
        lambda ids, v: "".join(v[i].decode("utf-8", "replace") for i in ids),
        capsys,
        "Join all the tokens' bytes first",
    )
    fails(
        ex.check_decode,
        lambda ids, v: b"".join(v[i] for i in ids).decode(),
        capsys,
        "errors='replace'",
    )
    fails(ex.check_decode, lambda ids, v: b"".join(v[i] for i in ids), capsys, "returned bytes")


def test_split_numbers(capsys):
    def right(text):
        return regex.findall(r"\p{N}{1,3}", text)

    passes(ex.check_split_numbers, right, capsys)
    fails(ex.check_split_numbers, lambda t: regex.findall(r"\d+", t), capsys, "at most 3")

    def thousands(text):
        out = []
        for run_ in regex.findall(r"\d+", text):
            head = len(run_) % 3 or 3
            out += [run_[:head]] + [run_[i : i + 3] for i in range(head, len(run_), 3)]
        return out

    fails(ex.check_split_numbers, thousands, capsys, "from the right")


# ---- chapter 2 ------------------------------------------------------------------------------


def render_message(role, content, channel=None):
    head = role + (f"<|channel|>{channel}" if channel else "")
    return f"<|start|>{head}<|message|>{content}<|end|>"


def test_render_message_typed_by_hand(capsys):
    assert render_message("assistant", "4", "final") == (
        "<|start|>assistant<|channel|>final<|message|>4<|end|>"
    )
    passes(ex.check_render_message, render_message, capsys)
    fails(
        ex.check_render_message,
        lambda r, c, ch=None: render_message(r, c, ch)[: -len("<|end|>")] + "<|return|>",
        capsys,
        "<|end|>",
    )
    fails(
        ex.check_render_message,
        lambda r, c, ch=None: (
            f"<|start|>{r}<|message|>{c}" + (f"<|channel|>{ch}" if ch else "") + "<|end|>"
        ),
        capsys,
        "before <|message|>",
    )
    fails(
        ex.check_render_message,
        lambda r, c, ch=None: render_message(r, c, ch).replace("<|message|>", " <|message|>"),
        capsys,
        "spaces",
    )


def system_message(effort, date=None):
    top = "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06"
    if date:
        top += f"\nCurrent date: {date}"
    body = (
        f"{top}\n\nReasoning: {effort}\n\n# Valid channels: analysis, commentary, final. "
        "Channel must be included for every message."
    )
    return f"<|start|>system<|message|>{body}<|end|>"


def test_system_message(capsys):
    passes(ex.check_system_message, system_message, capsys)
    fails(
        ex.check_system_message,
        lambda e, d=None: system_message(e.capitalize(), d),
        capsys,
        "lower-case",
    )
    fails(
        ex.check_system_message,
        lambda e, d=None: system_message(e, d).replace("\n\nReasoning", "\nReasoning"),
        capsys,
        "line 3",
    )
    fails(ex.check_system_message, lambda e, d=None: system_message(e, str(d)), capsys, "None")


def tool_call(name, args):
    return (
        f"<|start|>assistant to=functions.{name}<|channel|>commentary <|constrain|>json"
        f"<|message|>{json.dumps(args)}<|call|>"
    )


def test_tool_call(capsys):
    passes(ex.check_tool_call, tool_call, capsys)
    fails(ex.check_tool_call, lambda n, a: tool_call(n, a)[:-8] + "<|end|>", capsys, "<|call|>")
    fails(
        ex.check_tool_call,
        lambda n, a: tool_call(n, a).replace("functions.", ""),
        capsys,
        "to=functions.",
    )
    fails(
        ex.check_tool_call,
        lambda n, a: tool_call(n, a).replace("commentary", "final"),
        capsys,
        "commentary channel",
    )
    fails(
        ex.check_tool_call,
        lambda n, a: tool_call(n, a).replace(json.dumps(a), json.dumps(a, separators=(",", ":"))),
        capsys,
        "json.dumps",
    )


def kept(messages):
    last = [m for m in messages if m.role == "assistant"]
    if not last or last[-1].channel != "final":
        return list(messages)
    first_final = next(i for i, m in enumerate(messages) if m.channel == "final")
    return [m for i, m in enumerate(messages) if not (m.channel == "analysis" and i < first_final)]


def test_kept_messages(capsys):
    passes(ex.check_kept_messages, kept, capsys)
    fails(ex.check_kept_messages, list, capsys, "nothing was dropped")
    fails(
        ex.check_kept_messages,
        lambda ms: [m for m in ms if m.channel != "analysis"],
        capsys,
        "middle of a turn",
    )

    def drops_commentary(ms):
        out = kept(ms)
        return [m for m in out if m.channel != "commentary"] if out != list(ms) else out

    fails(ex.check_kept_messages, drops_commentary, capsys, "only analysis")


def parse_reply(text):
    out = []
    for part in regex.split(r"<\|start\|>assistant", text):
        header, _, rest = part.partition("<|message|>")
        channel = regex.search(r"<\|channel\|>([^\s<]*)", header).group(1)
        content = regex.split(r"<\|(?:end|return|call)\|>", rest)[0]
        out.append((channel, content))
    return out


def test_parse_reply(capsys):
    passes(ex.check_parse_reply, parse_reply, capsys)
    fails(
        ex.check_parse_reply,
        lambda t: [(c, x + "<|end|>") for c, x in parse_reply(t)],
        capsys,
        "end token",
    )

    def long_channel(text):
        out = []
        for part in regex.split(r"<\|start\|>assistant", text):
            header, _, rest = part.partition("<|message|>")
            out.append((header.split("<|channel|>")[1], regex.split(r"<\|\w+\|>", rest)[0]))
        return out

    fails(ex.check_parse_reply, long_channel, capsys, "only the word after <|channel|>")
    fails(ex.check_parse_reply, lambda t: parse_reply(t)[1:], capsys, "first message is missing")


def test_stop_tokens(capsys):
    passes(
        ex.check_stop_tokens,
        lambda tok: {tok.token_id("<|return|>"), tok.token_id("<|call|>")},
        capsys,
    )
    fails(ex.check_stop_tokens, lambda tok: {200002, 200012}, capsys, "hard-coded")
    fails(
        ex.check_stop_tokens,
        lambda tok: {tok.token_id(n) for n in ("<|return|>", "<|end|>", "<|call|>")},
        capsys,
        "<|end|>",
    )
    fails(ex.check_stop_tokens, lambda tok: {tok.token_id("<|return|>")}, capsys, "run on")


@pytest.mark.parametrize("name", ex.ch01_tokens.__all__ + ex.ch02_harmony.__all__)
def test_checker_never_raises_on_garbage(name, capsys):
    checker = getattr(ex, name)
    for bad in (lambda *a: None, lambda *a: 1 / 0, "not a function"):
        assert checker(bad) is False
        out = capsys.readouterr().out
        assert out.startswith("❌") and "Traceback" not in out, out


def test_harmony_reference_is_what_we_typed():
    # the checkers' references equal strings typed by hand from SPEC.md
    assert h.render([h.tool_call("add", {"a": 2})], for_completion=False) == tool_call(
        "add", {"a": 2}
    )
    assert h.render([h.system("low")], for_completion=False) == system_message("low")


# ---- extensions and hidden cases ----------------------------------------------------------------


def _merge_list(ids, pair, new):
    out, i = [], 0
    while i < len(ids):
        if ids[i : i + 2] == list(pair):
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_chunked(text, n_merges, pattern, across=False):
    """Written independently: pairs counted per chunk occurrence (not per distinct chunk)."""
    seqs = (
        [list(text.encode())]
        if across
        else [list(c.encode()) for c in regex.findall(pattern, text)]
    )
    merges = {}
    for k in range(n_merges):
        counts = Counter(p for s in seqs for p in zip(s, s[1:]))
        if not counts:
            break
        best = max(counts.values())
        pair = min(p for p, c in counts.items() if c == best)
        merges[pair] = 256 + k
        seqs = [_merge_list(s, pair, 256 + k) for s in seqs]
    return merges


def test_train_chunked(capsys):
    passes(ex.check_train_chunked, train_chunked, capsys)
    ok = ex.check_train_chunked(train_chunked, seed=12)
    assert ok, capsys.readouterr().out
    capsys.readouterr()
    fails(
        ex.check_train_chunked,
        lambda t, n, p: train_chunked(t, n, p, across=True),
        capsys,
        "may not cross a chunk boundary",
    )


def test_train_chunked_hand_case():
    # "aa aa": chunks "aa", " aa" -> pair (97, 97) twice; across chunks (97, 32) would also count
    assert train_chunked("aa aa", 1, r"\S+|\s+") == {(97, 97): 256}


def chat_turn(history, user_text, model):
    history = history + [h.user(user_text)]
    reply = model(h.render(history))
    messages = h.parse(reply, role="assistant").messages
    return history + messages, messages[-1].text


def test_chat_turn(capsys):
    passes(ex.check_chat_turn, chat_turn, capsys)
    ok = ex.check_chat_turn(chat_turn, seed=3)
    assert ok, capsys.readouterr().out
    capsys.readouterr()

    def keeps_analysis(history, user_text, model):
        history = history + [h.user(user_text)]
        messages = h.parse(model(h.render(history, auto_drop_analysis=False)), role="assistant")
        return history + messages.messages, messages.messages[-1].text

    fails(ex.check_chat_turn, keeps_analysis, capsys, "analysis of an earlier")

    def no_suffix(history, user_text, model):
        history = history + [h.user(user_text)]
        messages = h.parse(model(h.render(history, for_completion=False)), role="assistant")
        return history + messages.messages, messages.messages[-1].text

    fails(ex.check_chat_turn, no_suffix, capsys, "must end with '<|start|>assistant'")

    def forgets_reply(history, user_text, model):
        history = history + [h.user(user_text)]
        messages = h.parse(model(h.render(history)), role="assistant").messages
        return history, messages[-1].text

    fails(ex.check_chat_turn, forgets_reply, capsys, "every message of the reply")


@pytest.mark.parametrize("name", ex.ch01_tokens.__all__ + ex.ch02_harmony.__all__)
def test_every_checker_has_hidden_cases(name):
    assert getattr(ex, name).hidden, f"{name} takes no seed"
