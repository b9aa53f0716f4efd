"""A calculator tool and the agent loop that lets a model call it (chapter 15).

The developer message declares `functions.calculator` (harmony renders it as a TypeScript-like
type, `gptoss_edu.posttrain.CALCULATOR`). When the model writes a call,

    <|start|>assistant to=functions.calculator<|channel|>commentary <|constrain|>json
    <|message|>{"expression": "123 * 456"}<|call|>

generation stops at `<|call|>`; `run_agent` parses the JSON arguments, evaluates the expression
with `calculate` and appends the tool's reply as a tool message, then lets the model go on until
it answers on the final channel:

    result = run_agent(model, tok, "What is 123 * 456?", reasoning="low")
    result.final, result.calls, result.messages, result.errors, result.stopped

Model text is never executed. `calculate` reads the expression with a small grammar of its own
(integers, + - *, parentheses; no names, no calls, no powers), with bounds on the length, the
literals, the nesting and the size of every intermediate result. Whatever the model writes
(invalid JSON, an unknown tool, `__import__('os')`, a number with a thousand digits), the loop
answers with a tool message `{"error": "..."}` and never raises; it stops after `max_calls`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gptoss_edu import harmony
from gptoss_edu.harmony import Message

MAX_EXPRESSION_CHARS = 200
MAX_LITERAL_DIGITS = 12
MAX_RESULT_DIGITS = 40  # every intermediate value too
MAX_NESTING = 16
MAX_ARGUMENT_CHARS = 1000


class CalculatorError(ValueError):
    """An expression the calculator refuses; the message says why, for the model to read."""


_TOKEN = re.compile(r"\s*(?:(\d+)|([-+*()]))")


def _tokens(expression: str) -> list[str]:
    out, pos = [], 0
    while pos < len(expression):
        m = _TOKEN.match(expression, pos)
        if m is None:
            rest = expression[pos:].lstrip()
            if not rest:
                break
            at = len(expression) - len(rest)
            raise CalculatorError(
                f"unexpected character {rest[0]!r} at position {at}; only integers, + - * "
                "( ) and spaces are allowed"
            )
        number, op = m.groups()
        if number is not None and len(number) > MAX_LITERAL_DIGITS:
            raise CalculatorError(
                f"the number {number[:20]}... has {len(number)} digits; at most "
                f"{MAX_LITERAL_DIGITS} are allowed"
            )
        out.append(number if number is not None else op)
        pos = m.end()
    return out


class _Parser:
    """expr := term (("+" | "-") term)* ; term := factor ("*" factor)* ;
    factor := "-" factor | "(" expr ")" | integer"""

    def __init__(self, tokens: list[str]):
        self.tokens, self.i, self.depth = tokens, 0, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str | None:
        t = self.peek()
        self.i += 1
        return t

    @staticmethod
    def bounded(v: int) -> int:
        if abs(v) >= 10**MAX_RESULT_DIGITS:
            raise CalculatorError(f"a result has more than {MAX_RESULT_DIGITS} digits; refused")
        return v

    def expr(self) -> int:
        v = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            w = self.term()
            v = self.bounded(v + w if op == "+" else v - w)
        return v

    def term(self) -> int:
        v = self.factor()
        while self.peek() == "*":
            self.take()
            v = self.bounded(v * self.factor())
        return v

    def factor(self) -> int:
        t = self.take()
        if t is None:
            raise CalculatorError("the expression ends where a number was expected")
        if t == "-":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise CalculatorError(f"more than {MAX_NESTING} nested signs or parentheses")
            v = -self.factor()
            self.depth -= 1
            return v
        if t == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise CalculatorError(f"more than {MAX_NESTING} nested signs or parentheses")
            v = self.expr()
            if self.take() != ")":
                raise CalculatorError("a '(' is not closed")
            self.depth -= 1
            return v
        if t.isdigit():
            return int(t)
        raise CalculatorError(f"expected a number, found {t!r}")


def calculate(expression) -> int:
    """The value of an integer expression such as "123 * (4 - 56)"; CalculatorError otherwise."""
    if not isinstance(expression, str):
        raise CalculatorError(
            f'expression is a {type(expression).__name__}; expected a string like "123 * 456"'
        )
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(
            f"the expression has {len(expression)} characters; at most {MAX_EXPRESSION_CHARS}"
        )
    tokens = _tokens(expression)
    if not tokens:
        raise CalculatorError('the expression is empty; expected e.g. "123 * 456"')
    parser = _Parser(tokens)
    value = parser.expr()
    if parser.peek() is not None:
        raise CalculatorError(f"unexpected {parser.peek()!r} after a complete expression")
    return value


def calculator(arguments) -> dict:
    """The tool: {"expression": "..."} -> {"result": int}; CalculatorError for bad arguments."""
    if not isinstance(arguments, dict) or set(arguments) != {"expression"}:
        raise CalculatorError(
            f"arguments {json.dumps(arguments, default=repr, skipkeys=True)[:80]}; "
            'expected exactly {"expression": "..."}'
        )
    return {"result": calculate(arguments["expression"])}


TOOLS: dict[str, Callable[[dict], object]] = {"calculator": calculator}


# ---- the agent loop ---------------------------------------------------------------------


def is_tool_call(message: Message) -> bool:
    return message.role == "assistant" and message.recipient not in (None, "all")


def _author(recipient) -> str:
    """The tool message's author: the called name when it can be written into a header."""
    try:
        harmony.check_tool_name(recipient)
        return recipient if recipient.startswith("functions.") else f"functions.{recipient}"
    except (TypeError, ValueError):
        return "functions.unknown"


def execute_call(call: Message, tools: Mapping[str, Callable] = TOOLS) -> Message:
    """The tool message answering `call`: {"result": ...} or {"error": "..."}. Never raises."""
    name = call.recipient if isinstance(call.recipient, str) else ""
    short = name[len("functions.") :] if name.startswith("functions.") else None
    available = ", ".join(f"functions.{t}" for t in tools) or "none"
    try:
        if short not in tools:
            raise CalculatorError(f"unknown tool {name[:60]!r}; the tools are: {available}")
        if len(call.text) > MAX_ARGUMENT_CHARS:
            raise CalculatorError(
                f"the arguments have {len(call.text)} characters; at most {MAX_ARGUMENT_CHARS}"
            )
        try:
            arguments = json.loads(call.text)
        except (ValueError, RecursionError) as e:
            raise CalculatorError(f"the arguments are not valid JSON ({e})") from None
        output = tools[short](arguments)
        text = json.dumps(output)
    except CalculatorError as e:
        text = json.dumps({"error": str(e)})
    except Exception as e:  # a tool's own bug is reported to the model, never raised
        text = json.dumps({"error": f"the tool failed: {type(e).__name__}: {e}"[:300]})
    return harmony.tool_result(_author(name), text)


@dataclass
class AgentResult:
    """What run_agent did: the whole conversation, the answer, and how it stopped.

    stopped: "final" (answered), "call limit" (wanted another call after max_calls),
    "no answer" (stopped without a final message or a call).
    """

    messages: list[Message]
    final: str | None
    calls: int
    stopped: str
    errors: list[str] = field(default_factory=list)

    @property
    def tool_messages(self) -> list[Message]:
        return [m for m in self.messages if m.role == "tool"]


def run_agent(
    model,
    tokenizer,
    prompt_or_messages,
    *,
    tools: Mapping[str, Callable] = TOOLS,
    reasoning: str = "low",
    max_calls: int = 3,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    seed: int | None = 0,
) -> AgentResult:
    """Generate, execute tool calls, feed the results back, until a final answer.

    A prompt str becomes [system(reasoning), developer(tools=[CALCULATOR]), user(prompt)]; a list
    of messages is used as given (declare the tools in it yourself). At most `max_calls` calls
    are executed; malformed calls get an error tool message (see execute_call).
    """
    from gptoss_edu.conversation import chat
    from gptoss_edu.posttrain.data import CALCULATOR

    if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
        raise ValueError(f"run_agent: max_calls={max_calls!r}; expected an int >= 0")
    if isinstance(prompt_or_messages, str):
        messages = [
            harmony.system(reasoning_effort=reasoning),
            harmony.developer(tools=[CALCULATOR]),
            harmony.user(prompt_or_messages),
        ]
    elif isinstance(prompt_or_messages, Message) or not hasattr(prompt_or_messages, "__iter__"):
        raise TypeError(
            f"run_agent: got a {type(prompt_or_messages).__name__}; expected a prompt str or a "
            "list of Message"
        )
    else:
        messages = list(prompt_or_messages)
    errors: list[str] = []
    calls = 0
    while True:
        reply = chat(
            model,
            tokenizer,
            messages,
            reasoning=reasoning,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            stream=None,
        )
        errors += reply.errors
        messages += list(reply)
        last = reply[-1] if len(reply) else None
        if last is not None and is_tool_call(last):
            if calls >= max_calls:
                errors.append(f"the model asked for call {calls + 1}; the limit is {max_calls}")
                return AgentResult(messages, None, calls, "call limit", errors)
            calls += 1
            if reply.complete:
                messages.append(execute_call(last, tools))
            else:  # cut off by max_new_tokens before <|call|>: its arguments are not whole
                text = f"the call was cut off after {max_new_tokens} tokens, before <|call|>"
                messages.append(harmony.tool_result(_author(last.recipient), {"error": text}))
            continue
        stopped = "final" if reply.final is not None else "no answer"
        return AgentResult(messages, reply.final, calls, stopped, errors)


__all__ = [
    "AgentResult",
    "CalculatorError",
    "TOOLS",
    "calculate",
    "calculator",
    "execute_call",
    "is_tool_call",
    "run_agent",
]
