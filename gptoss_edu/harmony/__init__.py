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
analysis messages are dropped from history. One module per job:

    messages.py   the format tokens, Message and its contents, constructors (user(), tool_call())
    schema.py     a tool's JSON schema as the TypeScript-like type the model reads
    render.py     conversation -> text or token ids
    parse.py      text or token ids -> messages (never raises)
"""

from gptoss_edu.harmony.messages import (
    CALL,
    CHANNEL,
    CONSTRAIN,
    END,
    END_TOKENS,
    FORMAT_TOKENS,
    IDENTIFIER,
    MESSAGE,
    MODEL_IDENTITY,
    REASONING_EFFORTS,
    RETURN,
    ROLES,
    START,
    STOP_TOKENS,
    STOP_TOKENS_ASSISTANT_ACTIONS,
    Conversation,
    DeveloperContent,
    Message,
    SystemContent,
    Tool,
    assistant,
    check_identifier,
    check_tool_name,
    developer,
    stop_tokens,
    system,
    tool_call,
    tool_result,
    user,
)
from gptoss_edu.harmony.parse import ParseResult, StreamParser, parse, parse_header
from gptoss_edu.harmony.render import (
    Segment,
    kept_messages,
    render,
    render_developer_content,
    render_segments,
    render_system_content,
    render_tokens,
    render_tools,
)
from gptoss_edu.harmony.schema import MAX_SCHEMA_DEPTH, check_schema, schema_to_typescript

__all__ = [
    "CALL",
    "CHANNEL",
    "CONSTRAIN",
    "END",
    "END_TOKENS",
    "FORMAT_TOKENS",
    "IDENTIFIER",
    "MAX_SCHEMA_DEPTH",
    "MESSAGE",
    "MODEL_IDENTITY",
    "REASONING_EFFORTS",
    "RETURN",
    "ROLES",
    "START",
    "STOP_TOKENS",
    "STOP_TOKENS_ASSISTANT_ACTIONS",
    "Conversation",
    "DeveloperContent",
    "Message",
    "ParseResult",
    "Segment",
    "StreamParser",
    "SystemContent",
    "Tool",
    "assistant",
    "check_identifier",
    "check_schema",
    "check_tool_name",
    "developer",
    "kept_messages",
    "parse",
    "parse_header",
    "render",
    "render_developer_content",
    "render_segments",
    "render_system_content",
    "render_tokens",
    "render_tools",
    "schema_to_typescript",
    "stop_tokens",
    "system",
    "tool_call",
    "tool_result",
    "user",
]
