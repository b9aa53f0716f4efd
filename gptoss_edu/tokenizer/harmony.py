"""The harmony chat format: render conversations for gpt-oss and parse its replies (chapter 2).

Every message is

    <|start|>{header}<|message|>{content}<|end|>

where the header holds the author (system, developer, user, assistant, or a tool's name), an
optional ` to={recipient}`, an optional `<|channel|>{channel}` and an optional content type
(` <|constrain|>json` for JSON tool arguments). The assistant writes on three channels:
`analysis` (its chain of thought), `commentary` (tool calls) and `final` (the answer). A
completion prompt ends with `<|start|>assistant`; the model then writes the rest of the header.
It ends a final answer with `<|return|>` and a tool call with `<|call|>`.

    conv = [system(reasoning_effort="low"), user("What is 2 + 2?")]
    text = render(conv)                      # str, for reading
    ids = render_tokens(conv, tokenizer)     # list[int], for the model
    result = parse(generated_ids, tokenizer, role="assistant")
    result.messages, result.errors           # never raises

The rules follow OpenAI's harmony library (github.com/openai/harmony, src/encoding.rs): the
system message's layout, the developer message's TypeScript-like tool namespace, and which
analysis messages are dropped from history.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# ---- tokens -------------------------------------------------------------------------------

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
RETURN, CALL, CONSTRAIN = "<|return|>", "<|call|>", "<|constrain|>"
FORMAT_TOKENS = (START, END, MESSAGE, CHANNEL, RETURN, CALL, CONSTRAIN)
END_TOKENS = (END, RETURN, CALL)

# o200k_harmony's ids (SPEC.md). For another tokenizer use stop_tokens(tokenizer).
STOP_TOKENS = frozenset({200002, 200007, 200012})  # <|return|>, <|end|>, <|call|>
STOP_TOKENS_ASSISTANT_ACTIONS = frozenset({200002, 200012})  # <|return|>, <|call|>

MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
REASONING_EFFORTS = ("low", "medium", "high")
ROLES = ("system", "developer", "user", "assistant", "tool")


def stop_tokens(tokenizer, assistant_actions: bool = False) -> frozenset[int]:
    """Stop ids for any tokenizer, looked up by name.

    All three end tokens stop decoding of one message; for sampling a whole assistant turn
    (analysis, then final or a tool call) use assistant_actions=True: {<|return|>, <|call|>}.
    """
    names = (RETURN, CALL) if assistant_actions else (RETURN, END, CALL)
    return frozenset(tokenizer.token_id(n) for n in names)


# ---- messages -----------------------------------------------------------------------------


@dataclass
class Tool:
    """A function tool. `parameters` is a JSON schema of type "object" (or None: no arguments)."""

    name: str
    description: str = ""
    parameters: dict | None = None

    @classmethod
    def from_any(cls, t: Tool | dict) -> Tool:
        if isinstance(t, Tool):
            return t
        if isinstance(t, dict):
            f = t.get("function", t)  # accept OpenAI's {"type": "function", "function": {...}}
            if "name" not in f:
                raise ValueError(
                    f"tool {t!r} has no 'name'; expected {{'name', 'description', 'parameters'}}"
                )
            return cls(f["name"], f.get("description", ""), f.get("parameters"))
        raise TypeError(f"tool: got {type(t).__name__}; expected Tool or dict")


@dataclass
class SystemContent:
    """The system message's fields; None leaves a line out."""

    reasoning_effort: str | None = "medium"
    knowledge_cutoff: str | None = "2024-06"
    current_date: str | None = None
    model_identity: str | None = MODEL_IDENTITY
    valid_channels: tuple[str, ...] = ("analysis", "commentary", "final")
    channel_required: bool = True

    def __post_init__(self):
        if self.reasoning_effort is not None:
            effort = str(self.reasoning_effort).lower()
            if effort not in REASONING_EFFORTS:
                raise ValueError(
                    f"reasoning_effort={self.reasoning_effort!r}; expected one of {REASONING_EFFORTS}"
                )
            self.reasoning_effort = effort


@dataclass
class DeveloperContent:
    """The developer message: instructions and function tools."""

    instructions: str | None = None
    tools: list[Tool] = field(default_factory=list)

    def __post_init__(self):
        self.tools = [Tool.from_any(t) for t in self.tools]


@dataclass
class Message:
    """One harmony message.

    role: "system" | "developer" | "user" | "assistant" | "tool". For a tool's reply the role is
    "tool" and `name` is the tool ("functions.get_weather"); the header then shows that name.
    content: text, or SystemContent / DeveloperContent for those two roles.
    """

    role: str
    content: str | SystemContent | DeveloperContent = ""
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else ""


@dataclass
class Conversation:
    messages: list[Message] = field(default_factory=list)

    def append(self, message: Message) -> Conversation:
        self.messages.append(message)
        return self

    def __iter__(self):
        return iter(self.messages)

    def __len__(self):
        return len(self.messages)


# Short constructors, so a conversation reads like one.


def system(
    reasoning_effort: str | None = "medium",
    knowledge_cutoff: str | None = "2024-06",
    current_date: str | None = None,
    model_identity: str | None = MODEL_IDENTITY,
) -> Message:
    return Message(
        "system", SystemContent(reasoning_effort, knowledge_cutoff, current_date, model_identity)
    )


def developer(instructions: str | None = None, tools: Sequence[Tool | dict] = ()) -> Message:
    return Message("developer", DeveloperContent(instructions, list(tools)))


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str, channel: str = "final") -> Message:
    return Message("assistant", text, channel=channel)


def tool_call(name: str, arguments: dict | str, channel: str = "commentary") -> Message:
    """The assistant calling functions.NAME with JSON arguments."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    recipient = name if "." in name else f"functions.{name}"
    return Message(
        "assistant", args, channel=channel, recipient=recipient, content_type=CONSTRAIN + "json"
    )


def tool_result(name: str, output: Any, channel: str = "commentary") -> Message:
    """A tool's reply to the assistant."""
    text = output if isinstance(output, str) else json.dumps(output)
    author = name if "." in name else f"functions.{name}"
    return Message("tool", text, channel=channel, recipient="assistant", name=author)


# ---- rendering ----------------------------------------------------------------------------

# A rendering is a list of segments: ("special", "<|start|>") or ("text", "assistant").
# render() joins them; render_tokens() maps specials to their ids and encodes each text
# segment with encode_ordinary, so a message that *contains* "<|end|>" stays text.
Segment = tuple[str, str]


def _lines(s: str) -> list[str]:
    """Rust's str::lines(): split on \\n, drop one trailing empty line, strip a trailing \\r."""
    parts = s.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def _default_comment(schema: dict) -> str:
    # string defaults are quoted, except for enums; other values as compact JSON
    d = schema["default"]
    if isinstance(d, str):
        return f'default: "{d}"' if not schema.get("enum") else f"default: {d}"
    return "default: " + json.dumps(d, separators=(",", ":"), ensure_ascii=False)


def schema_to_typescript(schema: dict, indent: str = "") -> str:
    """A JSON schema as the TypeScript-like type harmony shows the model.

    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    -> "{\\ncity: string,\\n}"

    Nested objects indent their properties by four more spaces. oneOf and nullable follow
    harmony's encoding.rs.
    """
    if not isinstance(schema, dict):
        return "any"
    if isinstance(schema.get("oneOf"), list):
        out = ""
        for variant in schema["oneOf"]:
            out += f"\n{indent} | " + _variant(variant, indent)
        return out
    ty = schema.get("type")
    if isinstance(ty, list):
        names = ["number" if t == "integer" else t for t in ty if isinstance(t, str)]
        if names:
            return " | ".join(names)
    if ty == "object":
        out = ""
        if isinstance(schema.get("description"), str):
            out += f"{indent}// {schema['description']}\n"
        out += "{\n"
        required = set(schema.get("required", []) or [])
        for key, prop in (schema.get("properties") or {}).items():
            prop = prop if isinstance(prop, dict) else {}
            if isinstance(prop.get("title"), str):
                out += f"{indent}// {prop['title']}\n{indent}//\n"
            if "oneOf" not in prop and isinstance(prop.get("description"), str):
                out += f"{indent}// {prop['description']}\n"
            examples = prop.get("examples")
            if isinstance(examples, list) and examples:
                out += f"{indent}// Examples:\n"
                out += "".join(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
            optional = "" if key in required else "?"
            if isinstance(prop.get("oneOf"), list):
                out += _oneof_property(key, optional, prop, indent)
                continue
            type_str = schema_to_typescript(prop, indent + "    ")
            if prop.get("nullable") is True and "null" not in type_str:
                type_str += " | null"
            out += f"{indent}{key}{optional}: {type_str},"
            if "default" in prop:
                out += " // " + _default_comment(prop)
            out += "\n"
        return out + f"{indent}}}"
    if ty == "string":
        enum = [f'"{v}"' for v in schema.get("enum", []) or [] if isinstance(v, str)]
        return " | ".join(enum) if enum else "string"
    if ty in ("number", "integer"):
        return "number"
    if ty == "boolean":
        return "boolean"
    if ty == "array":
        return (
            schema_to_typescript(schema["items"], indent) + "[]"
            if "items" in schema
            else "Array<any>"
        )
    return "any"


def _variant(variant: dict, indent: str) -> str:
    variant = variant if isinstance(variant, dict) else {}
    s = schema_to_typescript(variant, indent + "   ")
    if variant.get("nullable") is True and "null" not in s:
        s += " | null"
    comments = []
    if isinstance(variant.get("description"), str):
        comments.append(variant["description"])
    if "default" in variant:
        d = variant["default"]
        # here harmony quotes every string default as JSON, enum or not
        if isinstance(d, str) and not variant.get("enum"):
            comments.append(f'default: "{d}"')
        else:
            comments.append("default: " + json.dumps(d, separators=(",", ":"), ensure_ascii=False))
    return s + (" // " + " ".join(comments) if comments else "")


def _oneof_property(key: str, optional: str, prop: dict, indent: str) -> str:
    variants = prop["oneOf"]
    desc = prop.get("description") if isinstance(prop.get("description"), str) else None
    first = variants[0] if variants and isinstance(variants[0], dict) else {}
    desc_above = desc is not None and first.get("description") != desc
    out = f"{indent}// {desc}\n" if desc_above else ""
    if "default" in prop:
        out += f"{indent}// {_default_comment(prop)}\n"
    out += f"{indent}{key}{optional}:\n"
    for i, variant in enumerate(variants):
        variant = variant if isinstance(variant, dict) else {}
        s = schema_to_typescript(variant, indent + "   ")
        if variant.get("nullable") is True and "null" not in s:
            s += " | null"
        comments = []
        vdesc = variant.get("description")
        if not (i == 0 and desc_above) and isinstance(vdesc, str) and vdesc != desc:
            comments.append(vdesc)
        if "default" in variant:
            comments.append(_default_comment(variant))
        out += f"{indent} | {s}" + (" // " + " ".join(comments) if comments else "") + "\n"
    return out + f"{indent},\n"


def render_tools(tools: Sequence[Tool], namespace: str = "functions") -> str:
    """The "# Tools" section: one TypeScript-like namespace holding a type per function."""
    parts = [f"## {namespace}\n", f"namespace {namespace} {{\n"]
    for t in tools:
        parts.extend(f"// {line}" for line in _lines(t.description))
        if t.parameters is not None:
            parts.append(f"type {t.name} = (_: {schema_to_typescript(t.parameters)}) => any;\n")
        else:
            parts.append(f"type {t.name} = () => any;\n")
    parts.append(f"}} // namespace {namespace}")
    return "# Tools\n\n" + "\n".join(parts)


def render_system_content(sys: SystemContent, has_function_tools: bool = False) -> str:
    sections = []
    top = []
    if sys.model_identity is not None:
        top.append(sys.model_identity)
    if sys.knowledge_cutoff is not None:
        top.append(f"Knowledge cutoff: {sys.knowledge_cutoff}")
    if sys.current_date is not None:
        top.append(f"Current date: {sys.current_date}")
    if top:
        sections.append("\n".join(top))
    if sys.reasoning_effort is not None:
        sections.append(f"Reasoning: {sys.reasoning_effort}")
    if sys.valid_channels:
        header = f"# Valid channels: {', '.join(sys.valid_channels)}."
        if sys.channel_required:
            header += " Channel must be included for every message."
        if has_function_tools:
            header += "\nCalls to these tools must go to the commentary channel: 'functions'."
        sections.append(header)
    return "\n\n".join(sections)


def render_developer_content(dev: DeveloperContent) -> str:
    sections = []
    if dev.instructions is not None:
        sections += ["# Instructions", dev.instructions]
    if dev.tools:
        sections.append(render_tools(dev.tools))
    return "\n\n".join(sections)


def _message_segments(msg: Message, has_function_tools: bool) -> list[Segment]:
    if msg.role == "tool":
        if not msg.name:
            raise ValueError("a tool message needs name= (the tool, e.g. 'functions.get_weather')")
        author = msg.name
    else:
        author = msg.role + (f":{msg.name}" if msg.name else "")
    seg: list[Segment] = [("special", START), ("text", author)]
    if msg.recipient is not None and msg.recipient != "all":
        seg.append(("text", f" to={msg.recipient}"))
    if msg.channel is not None:
        seg += [("special", CHANNEL), ("text", msg.channel)]
    if msg.content_type is not None:
        if msg.content_type.startswith(CONSTRAIN):
            # " <|constrain|>json": the marker is a special token, the rest is text
            seg += [("text", " "), ("special", CONSTRAIN)]
            rest = msg.content_type[len(CONSTRAIN) :]
            if rest:
                seg.append(("text", rest))
        else:
            seg.append(("text", f" {msg.content_type}"))
    seg.append(("special", MESSAGE))
    c = msg.content
    if isinstance(c, SystemContent):
        if msg.role != "system":
            raise ValueError(
                f"SystemContent belongs in a system message, found in a {msg.role!r} message"
            )
        text = render_system_content(c, has_function_tools)
    elif isinstance(c, DeveloperContent):
        if msg.role != "developer":
            raise ValueError(
                f"DeveloperContent belongs in a developer message, found in a {msg.role!r} message"
            )
        text = render_developer_content(c)
    elif isinstance(c, str):
        text = c
    else:
        raise TypeError(
            f"message content: got {type(c).__name__}; expected str, SystemContent or DeveloperContent"
        )
    if text:
        seg.append(("text", text))
    is_call = msg.role == "assistant" and msg.recipient is not None
    seg.append(("special", CALL if is_call else END))
    return seg


def _as_messages(conversation) -> list[Message]:
    if isinstance(conversation, Message):
        return [conversation]
    msgs = list(conversation)
    for m in msgs:
        if not isinstance(m, Message):
            raise TypeError(
                f"render: got a {type(m).__name__} in the conversation; expected Message"
            )
    return msgs


def kept_messages(messages: Sequence[Message], auto_drop_analysis: bool = True) -> list[Message]:
    """The messages a rendering keeps: harmony drops the analysis of finished turns.

    When the last assistant message is on the final channel, analysis messages that come
    before the conversation's first final message are dropped (openai/harmony's rule in
    encoding.rs, tested there as "keep analysis between finals"). During a tool-call loop
    (last assistant message not final) nothing is dropped.
    """
    if not auto_drop_analysis:
        return list(messages)
    last_assistant = next((m for m in reversed(messages) if m.role == "assistant"), None)
    if last_assistant is None or last_assistant.channel != "final":
        return list(messages)
    first_final = next(i for i, m in enumerate(messages) if m.channel == "final")
    return [m for i, m in enumerate(messages) if not (i < first_final and m.channel == "analysis")]


def render_segments(
    conversation,
    *,
    for_completion: bool = True,
    for_training: bool = False,
    auto_drop_analysis: bool = True,
    next_role: str = "assistant",
) -> list[Segment]:
    messages = _as_messages(conversation)
    has_function_tools = any(
        isinstance(m.content, DeveloperContent) and m.content.tools for m in messages
    )
    segments: list[Segment] = []
    for m in kept_messages(messages, auto_drop_analysis):
        segments += _message_segments(m, has_function_tools)
    if for_training:
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant" and last.channel == "final":
            segments[-1] = ("special", RETURN)  # the model learns to end its answer with <|return|>
    elif for_completion:
        segments += [("special", START), ("text", next_role)]
    return segments


def render(
    conversation,
    *,
    for_completion: bool = True,
    for_training: bool = False,
    auto_drop_analysis: bool = True,
    next_role: str = "assistant",
) -> str:
    """Render a conversation (Conversation, list of Message, or one Message) as harmony text.

    for_completion=True (default): end with `<|start|>assistant`, a prompt for the model.
    for_training=True: no prompt suffix; a last final assistant message ends with
    `<|return|>` (the token the model emits at decode time) instead of `<|end|>`.
    for_completion=False, for_training=False: just the messages.
    """
    segs = render_segments(
        conversation,
        for_completion=for_completion,
        for_training=for_training,
        auto_drop_analysis=auto_drop_analysis,
        next_role=next_role,
    )
    return "".join(s for _, s in segs)


def render_tokens(conversation, tokenizer, **kwargs) -> list[int]:
    """Like render(), as token ids: format tokens by id, every text piece by encode_ordinary."""
    ids: list[int] = []
    for kind, s in render_segments(conversation, **kwargs):
        if kind == "special":
            ids.append(tokenizer.token_id(s))
        else:
            ids.extend(tokenizer.encode_ordinary(s))
    return ids


# ---- parsing ------------------------------------------------------------------------------


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
            token = int(token)
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
