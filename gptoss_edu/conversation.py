"""Chatting with a model in harmony: render, generate, stream, parse (chapters 2 and 11).

    import gptoss_edu as ge
    model, tok = ge.load_tiny()
    reply = ge.chat(model, tok, "What is 2 + 2?", reasoning="low")   # prints the answer as it comes
    reply.final                                                     # the final answer's text
    reply[-1], reply.errors, reply.complete                         # messages + what parsing said

From a shell: `python -m gptoss_edu chat --tiny` (or `--checkpoint DIR`), one user line per turn.

A model as small as the book's tiny ones (hidden size up to SMALL_MODEL_HIDDEN) replies on one
torch thread, whatever torch's own setting: each of its operations lasts microseconds, so a second
thread costs more than it gives, and next to another busy process (a second notebook, a training
run) torch's threads wait for each other at every operation: measured on 2 cores, with two
processes at torch's default thread count, a reply of the tiny reasoner took 2.7 s instead of
0.64 s (and over 100 s in an earlier run: the waits vary from run to run;
benchmarks/results/contention.md). torch's setting is put back after the reply.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager

from gptoss_edu import harmony
from gptoss_edu.harmony import Conversation, Message, StreamParser


class ChatReply(list):
    """What chat() returns, always: the assistant's messages of one reply, in order (a list of
    harmony.Message: analysis, tool calls, final answer), plus what the parser reported.

        reply.errors     list[str]: malformed output, said in words ([] when all was well)
        reply.complete   False if generation stopped mid-message (max_new_tokens reached)
        reply.final      the final answer's text, or None
    """

    def __init__(self, messages: Sequence[Message], errors: Sequence[str], complete: bool):
        super().__init__(messages)
        self.errors = list(errors)
        self.complete = complete

    @property
    def messages(self) -> list[Message]:
        """The messages as a plain list (what harmony.ParseResult calls them)."""
        return list(self)

    @property
    def final(self) -> str | None:
        finals = [m.text for m in self if m.channel == "final"]
        return finals[-1] if finals else None

    def __repr__(self) -> str:
        return f"ChatReply({list.__repr__(self)}, errors={self.errors!r}, complete={self.complete})"


def _print_stream(text: str) -> None:
    print(text, end="", flush=True)


def _as_conversation(messages_or_prompt, reasoning: str) -> list[Message]:
    if isinstance(messages_or_prompt, str):
        return [harmony.system(reasoning_effort=reasoning), harmony.user(messages_or_prompt)]
    if isinstance(messages_or_prompt, Message):
        messages = [messages_or_prompt]
    elif isinstance(messages_or_prompt, (Conversation, Sequence)) and not isinstance(
        messages_or_prompt, (bytes, bytearray)
    ):
        messages = list(messages_or_prompt)
    else:
        raise TypeError(
            f"chat: got {type(messages_or_prompt).__name__}; expected a prompt str, a Message, "
            "a list of Message or a Conversation"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, Message):
            raise TypeError(
                f"chat: message {i} is a {type(m).__name__} ({m!r:.40}); expected a "
                "harmony.Message (e.g. harmony.user(text))"
            )
    if not any(m.role == "system" for m in messages):
        # no system message given: the reasoning effort lives there, so add one
        messages = [harmony.system(reasoning_effort=reasoning)] + messages
    return messages


SMALL_MODEL_HIDDEN = 256  # models up to this hidden size reply on one torch thread


@contextmanager
def _threads_for(model):
    """One torch thread while a small model replies (module docstring); torch's setting after."""
    import torch  # here, not at the top: harmony and this module's parsing work without torch

    config = getattr(model, "config", None)
    small = getattr(config, "hidden_size", SMALL_MODEL_HIDDEN + 1) <= SMALL_MODEL_HIDDEN
    before = torch.get_num_threads()
    if not small or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def chat(
    model,
    tokenizer,
    messages_or_prompt,
    *,
    reasoning: str = "low",
    max_new_tokens: int = 512,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    show_analysis: bool = False,
    stream: Callable[[str], object] | None = _print_stream,
    return_result: bool | None = None,
) -> ChatReply:
    """One assistant turn: render the prompt, generate, stream the final channel, parse.

    `messages_or_prompt` is a user prompt (a system message with `reasoning` is added) or a
    conversation (a system message is added when it has none). Text of the final channel is
    passed to `stream` as it arrives; with show_analysis=True the analysis channel is streamed
    too, in a block starting "[analysis] ". Generation stops at <|return|> or <|call|>.
    Returns a ChatReply: the assistant messages of the reply (analysis, tool calls, final
    answer) as a list, with `.errors` and `.complete` from the parser. Malformed output never
    raises. `return_result` is deprecated: the reply always carries what it used to add.
    A model with hidden size up to SMALL_MODEL_HIDDEN replies on one torch thread (see the
    module docstring).
    """
    if return_result is not None:
        warnings.warn(
            "chat(return_result=...) is deprecated and ignored: chat always returns a ChatReply, "
            "a list of the reply's messages with .errors and .complete; drop the argument",
            DeprecationWarning,
            stacklevel=2,
        )
    if reasoning not in harmony.REASONING_EFFORTS:
        raise ValueError(
            f"chat: reasoning={reasoning!r}; expected one of {harmony.REASONING_EFFORTS}"
        )
    messages = _as_conversation(messages_or_prompt, reasoning)
    prompt = harmony.render_tokens(messages, tokenizer, for_completion=True)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab is not None and max(prompt) >= vocab:  # ids past the model's: not its tokenizer
        name = getattr(tokenizer, "name", type(tokenizer).__name__)
        raise ValueError(
            f"chat: the tokenizer {name!r} gave token id {max(prompt)}, but this model has "
            f"{vocab} ids (vocab_size): it is not the model's tokenizer; use the one that came "
            "with the model (ge.load_tiny() and "
            "gptoss_edu.checkpoint.load_model_and_tokenizer(path) return both)"
        )
    parser = StreamParser(tokenizer, role="assistant")
    shown = {"channel": None}  # which channel's block is being streamed, to print headers once

    def on_token(token: int) -> None:
        delta = parser.process(token)
        if not delta or stream is None:
            return
        channel = parser.current_channel
        if channel == "final" or (show_analysis and channel == "analysis"):
            if channel != shown["channel"]:
                if shown["channel"] is not None:
                    stream("\n")
                if channel == "analysis":
                    stream("[analysis] ")
                shown["channel"] = channel
            stream(delta)

    generate = importlib.import_module("gptoss_edu.generation").generate
    with _threads_for(model):
        generate(
            model,
            prompt,
            max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop_tokens=tuple(harmony.stop_tokens(tokenizer, assistant_actions=True)),
            seed=seed,
            on_token=on_token,
        )
    if stream is not None and shown["channel"] is not None:
        stream("\n")
    result = parser.finish()
    return ChatReply(
        [m for m in result.messages if m.role == "assistant"], result.errors, result.complete
    )


# ---- the command line -------------------------------------------------------------------


def _load(args) -> tuple[object, object]:
    """(model, tokenizer) for --tiny or --checkpoint DIR; raises FileNotFoundError with advice."""
    import gptoss_edu as ge

    if args.tiny:
        try:
            return ge.load_tiny()
        except (ImportError, AttributeError) as e:
            raise FileNotFoundError(
                f"--tiny: the trained tiny model is not available in this version of gptoss_edu ({e}); "
                "use --checkpoint DIR"
            ) from e
    from .__main__ import load_model_and_tokenizer  # the one loader of every command

    model, tokenizer = load_model_and_tokenizer(args.checkpoint)
    return model, tokenizer


def cli(argv: list[str] | None = None) -> int:
    """`python -m gptoss_edu chat ...`: a conversation read line by line from stdin."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "chat":
        argv = argv[1:]
    ap = argparse.ArgumentParser(prog="python -m gptoss_edu chat", description=cli.__doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR", help="a gpt-oss checkpoint folder")
    src.add_argument(
        "--tiny", action="store_true", help="the trained tiny gpt-oss shipped with the package"
    )
    ap.add_argument("--reasoning", choices=harmony.REASONING_EFFORTS, default="low")
    ap.add_argument("--show-analysis", action="store_true", help="also print the chain of thought")
    from .__main__ import nonneg_float, nonneg_int  # checked before the model loads

    ap.add_argument("--max-new-tokens", type=nonneg_int, default=512)
    ap.add_argument("--temperature", type=nonneg_float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    if args.seed is not None and not -(2**63) <= args.seed < 2**64:  # what torch can seed with
        ap.error(f"argument --seed: expected an integer in [-2**63, 2**64); found {args.seed}")
    try:
        model, tokenizer = _load(args)
        from .__main__ import warm_backend  # the back end's one message comes before any reply

        warm_backend(model)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    messages: list[Message] = [harmony.system(reasoning_effort=args.reasoning)]
    if hasattr(sys.stdin, "reconfigure"):  # bytes that are not UTF-8 become U+FFFD, not a crash
        sys.stdin.reconfigure(errors="replace")
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        line = line.rstrip("\n")
        if not line.strip():
            continue
        messages.append(harmony.user(line))
        replies = chat(
            model,
            tokenizer,
            messages,
            reasoning=args.reasoning,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
            show_analysis=args.show_analysis,
        )
        if not any(m.channel == "final" for m in replies):
            print("(no final answer: the model stopped before writing one)", flush=True)
        # history keeps the final answer; harmony drops earlier analysis anyway
        messages += [m for m in replies if m.channel == "final"]
    return 0
