"""JSON schema -> the TypeScript-like type harmony shows the model for a tool (chapter 2).

    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    -> "{\\ncity: string,\\n}"

The layout follows OpenAI's harmony library (src/encoding.rs). Where a schema holds text that
would break that layout (a description with a newline, an enum value with a quote, a property
name with a space) it is written so that it stays one comment, one string or one key; for
ordinary schemas the output is harmony's, character for character. A schema is data from
outside, so its nesting is bounded (MAX_SCHEMA_DEPTH) before anything recurses over it.
"""

from __future__ import annotations

import json
import re

MAX_SCHEMA_DEPTH = 64  # levels of JSON nesting (dicts and lists) a tool schema may have

_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")  # a property name TypeScript takes unquoted


def check_schema(schema, what: str = "schema") -> None:
    """Raise ValueError if `schema` nests deeper than MAX_SCHEMA_DEPTH (checked without
    recursion, so a hostile schema 100,000 levels deep is refused, not a RecursionError), and
    TypeError if it is not JSON data (a key that is not a str, a set, an object)."""
    stack = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            bad = [k for k in node if not isinstance(k, str)]
            if bad:
                raise TypeError(
                    f"{what}: the key {bad[0]!r:.40} is a {type(bad[0]).__name__}; JSON object keys "
                    "are strings"
                )
            children = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        elif node is None or isinstance(node, (str, int, float)):
            continue
        else:
            raise TypeError(
                f"{what}: {node!r:.40} is a {type(node).__name__}; a JSON schema holds only "
                "dicts, lists, strings, numbers, booleans and None"
            )
        if depth > MAX_SCHEMA_DEPTH:
            raise ValueError(
                f"{what}: the JSON schema is nested more than {MAX_SCHEMA_DEPTH} levels deep; "
                "flatten it (a tool's arguments rarely need more than a few levels)"
            )
        stack.extend((child, depth + 1) for child in children)


def _string(s: str) -> str:
    """A string literal: json.dumps quotes it exactly as harmony does unless it holds a quote,
    a backslash or a control character, which it escapes."""
    return json.dumps(s, ensure_ascii=False)


def _key(key: str) -> str:
    return key if _KEY.fullmatch(key) else _string(key)


def _comment_lines(text: str, indent: str) -> str:
    """`text` as `// ` comment lines: each line of a multi-line description stays a comment."""
    lines = text.splitlines() or [""]
    return "".join(f"{indent}// {line}\n" for line in lines)


def _inline(text: str) -> str:
    """Text for a comment at the end of a line: on one line."""
    return " ".join(text.splitlines())


def _default_comment(schema: dict) -> str:
    # string defaults are quoted, except for enums; other values as compact JSON
    d = schema["default"]
    if isinstance(d, str):
        return f"default: {_string(d)}" if not schema.get("enum") else f"default: {_inline(d)}"
    return "default: " + json.dumps(d, separators=(",", ":"), ensure_ascii=False)


def schema_to_typescript(schema: dict, indent: str = "") -> str:
    """A JSON schema as the TypeScript-like type harmony shows the model.

    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    -> "{\\ncity: string,\\n}"

    Nested objects indent their properties by four more spaces. oneOf and nullable follow
    harmony's encoding.rs.
    """
    check_schema(schema, "schema_to_typescript")
    return _to_typescript(schema, indent)


def _to_typescript(schema: dict, indent: str) -> str:
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
            return " | ".join(_inline(n) for n in names)
    if ty == "object":
        out = ""
        if isinstance(schema.get("description"), str):
            out += _comment_lines(schema["description"], indent)
        out += "{\n"
        required = schema.get("required") or []
        required = (
            set(r for r in required if isinstance(r, str)) if isinstance(required, list) else set()
        )
        properties = schema.get("properties") or {}
        for key, prop in properties.items() if isinstance(properties, dict) else ():
            prop = prop if isinstance(prop, dict) else {}
            if isinstance(prop.get("title"), str):
                out += _comment_lines(prop["title"], indent) + f"{indent}//\n"
            if "oneOf" not in prop and isinstance(prop.get("description"), str):
                out += _comment_lines(prop["description"], indent)
            examples = prop.get("examples")
            if isinstance(examples, list) and examples:
                out += f"{indent}// Examples:\n"
                out += "".join(
                    f"{indent}// - {_string(ex)}\n" for ex in examples if isinstance(ex, str)
                )
            optional = "" if key in required else "?"
            if isinstance(prop.get("oneOf"), list):
                out += _oneof_property(_key(key), optional, prop, indent)
                continue
            type_str = _to_typescript(prop, indent + "    ")
            if prop.get("nullable") is True and "null" not in type_str:
                type_str += " | null"
            out += f"{indent}{_key(key)}{optional}: {type_str},"
            if "default" in prop:
                out += " // " + _default_comment(prop)
            out += "\n"
        return out + f"{indent}}}"
    if ty == "string":
        enum = schema.get("enum") or []
        enum = [_string(v) for v in enum if isinstance(v, str)] if isinstance(enum, list) else []
        return " | ".join(enum) if enum else "string"
    if ty in ("number", "integer"):
        return "number"
    if ty == "boolean":
        return "boolean"
    if ty == "array":
        return _to_typescript(schema["items"], indent) + "[]" if "items" in schema else "Array<any>"
    return "any"


def _variant(variant: dict, indent: str) -> str:
    variant = variant if isinstance(variant, dict) else {}
    s = _to_typescript(variant, indent + "   ")
    if variant.get("nullable") is True and "null" not in s:
        s += " | null"
    comments = []
    if isinstance(variant.get("description"), str):
        comments.append(_inline(variant["description"]))
    if "default" in variant:
        d = variant["default"]
        # here harmony quotes every string default as JSON, enum or not
        if isinstance(d, str) and not variant.get("enum"):
            comments.append(f"default: {_string(d)}")
        else:
            comments.append("default: " + json.dumps(d, separators=(",", ":"), ensure_ascii=False))
    return s + (" // " + " ".join(comments) if comments else "")


def _oneof_property(key: str, optional: str, prop: dict, indent: str) -> str:
    variants = prop["oneOf"]
    desc = prop.get("description") if isinstance(prop.get("description"), str) else None
    first = variants[0] if variants and isinstance(variants[0], dict) else {}
    desc_above = desc is not None and first.get("description") != desc
    out = _comment_lines(desc, indent) if desc_above else ""
    if "default" in prop:
        out += f"{indent}// {_default_comment(prop)}\n"
    out += f"{indent}{key}{optional}:\n"
    for i, variant in enumerate(variants):
        variant = variant if isinstance(variant, dict) else {}
        s = _to_typescript(variant, indent + "   ")
        if variant.get("nullable") is True and "null" not in s:
            s += " | null"
        comments = []
        vdesc = variant.get("description")
        if not (i == 0 and desc_above) and isinstance(vdesc, str) and vdesc != desc:
            comments.append(_inline(vdesc))
        if "default" in variant:
            comments.append(_default_comment(variant))
        out += f"{indent} | {s}" + (" // " + " ".join(comments) if comments else "") + "\n"
    return out + f"{indent},\n"
