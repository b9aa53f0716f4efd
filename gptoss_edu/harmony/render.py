"""Rendering conversations as harmony text or token ids (chapter 2).

Every message is

    <|start|>{header}<|message|>{content}<|end|>

render() gives the text, for reading; render_tokens() the ids, for the model. Only the ids are
unambiguous: in them a message that *contains* "<|end|>" is that text's ordinary tokens, while
in the text form it looks like the real token. Header fields (author, recipient, channel,
content type) are checked before they are written: a space, newline or format token in them
would change the header's structure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gptoss_edu.harmony.messages import (
    CALL,
    CHANNEL,
    CONSTRAIN,
    END,
    MESSAGE,
    RETURN,
    ROLES,
    START,
    DeveloperContent,
    Message,
    SystemContent,
    Tool,
    check_identifier,
)
from gptoss_edu.harmony.schema import schema_to_typescript

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


def render_tools(tools: Sequence[Tool], namespace: str = "functions") -> str:
    """The "# Tools" section: one TypeScript-like namespace holding a type per function."""
    check_identifier(namespace, "render_tools: namespace")
    parts = [f"## {namespace}\n", f"namespace {namespace} {{\n"]
    for t in tools:
        check_identifier(t.name, "tool name")  # again: a Tool's fields can be reassigned
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


def _header_field(value, what: str) -> str:
    """A header word: a non-empty str with no whitespace and no format token in it."""
    if not isinstance(value, str):
        raise TypeError(f"render: {what} is a {type(value).__name__}; expected a str")
    if not value or any(c.isspace() for c in value) or "<|" in value:
        raise ValueError(
            f"render: {what} {value!r:.80} would break the message header; expected one word "
            "without spaces, newlines or '<|' (e.g. 'functions.get_weather', 'final')"
        )
    return value


def _message_segments(msg: Message, has_function_tools: bool) -> list[Segment]:
    if msg.role not in ROLES:
        raise ValueError(f"render: message role {msg.role!r:.80}; expected one of {ROLES}")
    if msg.name is not None:
        _header_field(msg.name, f"the {msg.role} message's name")
    if msg.recipient is not None:
        _header_field(msg.recipient, "recipient")
    if msg.channel is not None:
        _header_field(msg.channel, "channel")
    if msg.content_type is not None:
        ct = msg.content_type
        if not isinstance(ct, str):
            raise TypeError(f"render: content_type is a {type(ct).__name__}; expected a str")
        word = ct[len(CONSTRAIN) :] if ct.startswith(CONSTRAIN) else ct
        if word or not ct.startswith(CONSTRAIN):  # a bare "<|constrain|>" is allowed
            _header_field(word, "content_type")
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
    if isinstance(conversation, (str, bytes)) or not isinstance(conversation, Iterable):
        raise TypeError(
            f"render: got a {type(conversation).__name__}; expected a Conversation, a list of "
            "Message or one Message"
        )
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
        segments += [("special", START), ("text", _header_field(next_role, "next_role"))]
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
