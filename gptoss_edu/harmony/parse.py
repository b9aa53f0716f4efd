"""Parsing harmony output back into messages (chapter 2). Never raises.

    result = parse(generated_ids, tokenizer, role="assistant")
    result.messages, result.errors, result.complete

StreamParser reads one token at a time (for streaming a reply while it is generated); parse()
runs it over a whole output. Whatever the input (random ids, floats, truncated text, nested
format tokens), problems are reported in `.errors` and everything readable is returned.
"""

from __future__ import annotations

import codecs
import operator
import re
from dataclasses import dataclass

from gptoss_edu.harmony.messages import (
    CALL,
    CHANNEL,
    CONSTRAIN,
    END_TOKENS,
    FORMAT_TOKENS,
    MESSAGE,
    ROLES,
    START,
    Message,
)


@dataclass
class ParseResult:
    """What parse() could read. `complete` is False when the output stopped mid-message."""

    messages: list[Message]
    errors: list[str]
    complete: bool = True

    @property
    def final(self) -> str | None:
        """The text of the last final-channel message, if any."""
        finals = [m.text for m in self.messages if m.channel == "final"]
        return finals[-1] if finals else None


def _split_role(first: str) -> tuple[str, str | None]:
    if first in ROLES:
        return first, None
    if ":" in first and first.split(":", 1)[0] in ("user", "assistant", "system", "developer"):
        role, name = first.split(":", 1)
        return role, name
    return "tool", first  # a tool's reply is authored by the tool's name


def parse_header(header: str, role: str | None = None) -> tuple[Message, list[str]]:
    """Parse a header such as "assistant to=functions.f<|channel|>commentary <|constrain|>json".

    Returns an empty-content Message and a list of problems found (following harmony's
    parse_header_from_string: the channel is cut out first, then the remaining words are
    role, recipient (to=...) and content type).
    """
    errors: list[str] = []
    channel = None
    idx = header.find(CHANNEL)
    if idx >= 0:
        after = header[idx + len(CHANNEL) :]
        m = re.match(r"[^\s<]*", after)
        channel = m.group()
        if not channel:
            errors.append(f"header {header!r}: <|channel|> is not followed by a channel name")
            channel = None
        header = header[:idx] + after[m.end() :]
    # a second <|channel|> is a mistake; drop the marker so it is not taken for a recipient
    if CHANNEL in header:
        errors.append(f"header has more than one <|channel|>: {header!r}")
        header = header.replace(CHANNEL, " ")
    header = header.replace(CONSTRAIN, " " + CONSTRAIN).strip()
    parts = header.split()
    if role is None:
        if not parts:
            errors.append("message header has no role")
            role = "assistant"
            name = None
        else:
            role, name = _split_role(parts.pop(0))
    else:
        name = None
        if parts and parts[0] == role:
            parts.pop(0)
    recipient = content_type = None
    if parts:
        last = parts.pop()
        if last.startswith("to="):
            recipient = last[3:]
        elif not parts and not last.startswith(CONSTRAIN):
            recipient = last
        else:
            content_type = last
            if parts:
                r = parts.pop()
                recipient = r[3:] if r.startswith("to=") else r
    if parts:
        errors.append(f"unexpected words in message header: {' '.join(parts)!r}")
    return Message(
        role, "", channel=channel, recipient=recipient, content_type=content_type, name=name
    ), errors


class StreamParser:
    """Reads harmony output one piece at a time: special tokens and text.

    Feed it token ids with process(token) (needs a tokenizer), or format tokens and text
    yourself with feed_special(name) / feed_text(text). Properties tell which message is being
    written (current_channel, current_recipient); process() returns the new content text, so
    a caller can stream the final channel while it is generated. finish() returns a
    ParseResult and never raises.
    """

    def __init__(self, tokenizer=None, role: str | None = None):
        self.tokenizer = tokenizer
        self.messages: list[Message] = []
        self.errors: list[str] = []
        self._role = (
            role  # role of the message whose header comes first (after "<|start|>assistant")
        )
        self._state = "header" if role is not None else "start"
        self._header = ""
        self._current: Message | None = None
        self._content: list[str] = []
        self._special_ids: dict[int, str] = {}
        if tokenizer is not None:
            for name in FORMAT_TOKENS:
                try:
                    self._special_ids[tokenizer.token_id(name)] = name
                except KeyError:
                    self.errors.append(
                        f"tokenizer {getattr(tokenizer, 'name', '?')} has no {name} token"
                    )
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    # properties for streaming callers
    @property
    def current_channel(self) -> str | None:
        return self._current.channel if self._current is not None else None

    @property
    def current_recipient(self) -> str | None:
        return self._current.recipient if self._current is not None else None

    @property
    def in_content(self) -> bool:
        return self._state == "content"

    def process(self, token: int) -> str:
        """Consume one token id; returns the content text it added ("" if none)."""
        try:
            if isinstance(token, bool) or not hasattr(token, "__index__"):
                self.errors.append(f"token {token!r:.40} is not an integer id; skipped")
                return ""
            try:  # never int(): a float id is an error, not truncated
                token = operator.index(token)
            except TypeError:  # e.g. a row of a 2-D tensor, or a float tensor's element
                self.errors.append(
                    f"token {token!r:.40} is not an integer id (expected a flat sequence of "
                    "ids); skipped"
                )
                return ""
            if self.tokenizer is None:
                self.errors.append(
                    f"token id {token}: this StreamParser has no tokenizer to read ids with; "
                    "create it as StreamParser(tokenizer) (or feed text with feed_text)"
                )
                return ""
            if token in self._special_ids:
                self._flush_utf8()
                self.feed_special(self._special_ids[token])
                return ""
            try:
                raw = self.tokenizer.decode_tokens_bytes([token])[0]
            except Exception:
                self.errors.append(f"token id {token} is not in the vocabulary; skipped")
                return ""
            if self.tokenizer.is_special_token(token):
                self._flush_utf8()
                self.errors.append(
                    f"unexpected special token {raw.decode('utf-8', 'replace')} ({token}); skipped"
                )
                return ""
            return self.feed_text(self._utf8.decode(raw))
        except Exception as e:  # the parser must never crash a generation loop
            self.errors.append(f"internal parser error on token {token!r}: {e!r}")
            return ""

    def _flush_utf8(self):
        rest = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        if rest:
            self.feed_text(rest)

    def feed_text(self, text: str) -> str:
        if not text:
            return ""
        if self._state == "start":
            if text.strip():
                self.errors.append(f"text outside any message (expected <|start|>): {text[:40]!r}")
            return ""
        if self._state == "header":
            self._header += text
            return ""
        self._content.append(text)
        return text

    def feed_special(self, name: str) -> None:
        if name == START:
            if self._state == "content":
                self.errors.append("a message was not closed before the next <|start|>")
                self._close()
            elif self._state == "header" and self._header.strip():
                self.errors.append(
                    f"a header without <|message|> was followed by <|start|>: {self._header!r}"
                )
            self._state, self._header, self._role = "header", "", None
        elif self._state == "start":
            self.errors.append(f"{name} outside any message (expected <|start|>); skipped")
        elif self._state == "header":
            if name in (CHANNEL, CONSTRAIN):
                self._header += name
            elif name == MESSAGE:
                msg, errs = parse_header(self._header, self._role)
                self.errors += errs
                self._current, self._content = msg, []
                self._state, self._header, self._role = "content", "", None
            else:  # an end token before <|message|>: keep what the header says
                self.errors.append(
                    f"{name} ended a message whose header has no <|message|>: {self._header!r}"
                )
                if self._header.strip() or self._role is not None:
                    msg, errs = parse_header(self._header, self._role)
                    self.errors += errs
                    self.messages.append(msg)
                self._state, self._header, self._role = "start", "", None
        else:  # content
            if name in END_TOKENS:
                if name == CALL and self._current.recipient is None:
                    self.errors.append("<|call|> ended a message that has no recipient (to=...)")
                self._close()
                self._state = "start"
            else:
                self.errors.append(f"{name} inside message content; kept as text")
                self._content.append(name)

    def _close(self):
        self._current.content = "".join(self._content)
        self.messages.append(self._current)
        self._current, self._content = None, []

    def finish(self) -> ParseResult:
        """End of output: close what is open (marking the result incomplete) and return it."""
        complete = True
        try:
            if self.tokenizer is not None:
                self._flush_utf8()
            if self._state == "content":
                self.errors.append(
                    "output ended inside a message (no <|end|>, <|return|> or <|call|>)"
                )
                self._close()
                complete = False
            elif self._state == "header" and (self._header.strip() or self._role is None):
                self.errors.append(f"output ended inside a message header: {self._header!r}")
                complete = False
            elif self._state == "header":
                complete = False  # nothing generated after "<|start|>assistant"
            self._state = "start"
        except Exception as e:
            self.errors.append(f"internal parser error at the end: {e!r}")
            complete = False
        return ParseResult(list(self.messages), list(self.errors), complete)


_FORMAT_RE = re.compile("|".join(re.escape(t) for t in FORMAT_TOKENS))


def parse(tokens_or_text, tokenizer=None, *, role: str | None = None) -> ParseResult:
    """Turn model output (token ids or text) back into messages. Never raises.

    role="assistant" when the output continues a prompt that ended with `<|start|>assistant`
    (the header then starts with "<|channel|>..."). Token ids need a tokenizer; without one,
    o200k_harmony is loaded. Problems are reported in `.errors`, and everything readable is
    still returned.
    """
    try:
        if isinstance(tokens_or_text, str):
            p = StreamParser(None, role=role)
            pos = 0
            for m in _FORMAT_RE.finditer(tokens_or_text):
                p.feed_text(tokens_or_text[pos : m.start()])
                p.feed_special(m.group())
                pos = m.end()
            p.feed_text(tokens_or_text[pos:])
            return p.finish()
        if isinstance(tokens_or_text, (bytes, bytearray)):
            return ParseResult(
                [], ["parse: got bytes; decode them to str first (or pass token ids)"], False
            )
        if tokenizer is None:
            try:
                from gptoss_edu.tokenizer.o200k import o200k_harmony

                tokenizer = o200k_harmony()
            except Exception as e:
                return ParseResult(
                    [], [f"parse: token ids need a tokenizer and o200k_harmony failed: {e}"], False
                )
        p = StreamParser(tokenizer, role=role)
        for t in tokens_or_text:
            p.process(t)
        return p.finish()
    except Exception as e:  # e.g. an input that is neither text nor an iterable of ints
        return ParseResult(
            [], [f"parse: could not read the input ({type(tokens_or_text).__name__}): {e!r}"], False
        )
