"""Harmony's building blocks: its format tokens, the message types and their constructors
(chapter 2). Rendering is in render.py, tool schemas in schema.py, parsing in parse.py.

    conv = [system(reasoning_effort="low"), developer("Be brief.", tools=[weather]),
            user("Weather in Porto?")]

Everything a user types that lands in a message *header* (tool names, recipients, channels) is
checked here or at rendering: a newline or a format token there would change the structure of
the conversation the model reads, not just its text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gptoss_edu.harmony.schema import check_schema

# ---- tokens -----------------------------------------------------------------------------

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
RETURN, CALL, CONSTRAIN = "<|return|>", "<|call|>", "<|constrain|>"
FORMAT_TOKENS = (START, END, MESSAGE, CHANNEL, RETURN, CALL, CONSTRAIN)
END_TOKENS = (END, RETURN, CALL)

# o200k_harmony's ids (chapter 2; the reference card, book/appendix_reference_card.md). For another tokenizer use stop_tokens(tokenizer).
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


# A tool's name becomes `type NAME = ...` inside the developer message's namespace, and the
# recipient `functions.NAME` of a call: an identifier, so that it can end neither.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_identifier(name, what: str) -> str:
    """`name` if it is an ASCII identifier (get_weather, lookup2), else a ValueError naming it."""
    if not isinstance(name, str):
        raise TypeError(f"{what}: expected a str; found a {type(name).__name__} ({name!r:.60})")
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} {name!r:.80} is not an identifier; expected letters, digits and _ "
            "(not starting with a digit), e.g. 'get_weather': the name is written into the "
            "developer message's TypeScript namespace and into message headers"
        )
    return name


def check_tool_name(name, what: str = "tool name") -> str:
    """A tool name, optionally with its namespace: "get_weather" or "functions.get_weather"."""
    if isinstance(name, str) and "." in name:
        for part in name.split("."):
            check_identifier(part, f"{what} {name!r:.80}: part")
        return name
    return check_identifier(name, what)


@dataclass
class Tool:
    """A function tool. `parameters` is a JSON schema of type "object" (or None: no arguments).

    The name must be an identifier; the schema may nest at most schema.MAX_SCHEMA_DEPTH levels.
    """

    name: str
    description: str = ""
    parameters: dict | None = None

    def __post_init__(self):
        check_identifier(self.name, "tool name")
        if self.description is None:
            self.description = ""
        if not isinstance(self.description, str):
            raise TypeError(
                f"tool {self.name!r}: description is a {type(self.description).__name__}; "
                "expected a str"
            )
        if self.parameters is not None:
            if not isinstance(self.parameters, dict):
                raise TypeError(
                    f"tool {self.name!r}: parameters is a {type(self.parameters).__name__}; "
                    'expected a JSON schema dict such as {"type": "object", "properties": {...}}'
                )
            check_schema(self.parameters, f"tool {self.name!r}: parameters")

    @classmethod
    def from_any(cls, t: Tool | dict) -> Tool:
        if isinstance(t, Tool):
            return t
        if isinstance(t, dict):
            f = t.get("function", t)  # accept OpenAI's {"type": "function", "function": {...}}
            if not isinstance(f, dict) or "name" not in f:
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
        channels = self.valid_channels
        if isinstance(channels, (str, bytes)) or (
            isinstance(channels, (list, tuple)) and not all(isinstance(c, str) for c in channels)
        ):
            raise TypeError(
                f"valid_channels={channels!r:.80}; expected a tuple of channel names such as "
                "('analysis', 'commentary', 'final')"
            )
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
        if self.instructions is not None and not isinstance(self.instructions, str):
            raise TypeError(
                f"developer instructions: got a {type(self.instructions).__name__}; expected a str"
            )
        if isinstance(self.tools, (str, bytes, dict, Tool)) or not isinstance(self.tools, Iterable):
            raise TypeError(
                f"developer tools: got a {type(self.tools).__name__}; expected a list of Tool or dict"
            )
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
    return Message("developer", DeveloperContent(instructions, tools))


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str, channel: str = "final") -> Message:
    return Message("assistant", text, channel=channel)


def _json(value, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what}: the value is not JSON ({e}); give a str or JSON data") from None


def tool_call(name: str, arguments: dict | str, channel: str = "commentary") -> Message:
    """The assistant calling functions.NAME with JSON arguments."""
    check_tool_name(name, "tool_call: name")
    args = arguments if isinstance(arguments, str) else _json(arguments, f"tool_call {name!r}")
    recipient = name if "." in name else f"functions.{name}"
    return Message(
        "assistant", args, channel=channel, recipient=recipient, content_type=CONSTRAIN + "json"
    )


def tool_result(name: str, output: Any, channel: str = "commentary") -> Message:
    """A tool's reply to the assistant."""
    check_tool_name(name, "tool_result: name")
    text = output if isinstance(output, str) else _json(output, f"tool_result {name!r}")
    author = name if "." in name else f"functions.{name}"
    return Message("tool", text, channel=channel, recipient="assistant", name=author)
