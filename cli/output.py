"""Paths and messages made safe to print: one line each, and encodable whatever the name."""

from __future__ import annotations

import json
import re

# Control characters, the backslash itself, and the lone surrogates by which Python carries
# the bytes of a file name that is not UTF-8 (os.fsdecode's surrogateescape).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\\\udc80-\udcff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_SURROGATE = re.compile(r"[\udc80-\udcff]")


def _escape(m: re.Match) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    return f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"  # the byte itself


def printable(text: str) -> str:
    """``text`` on one line: newline -> \\n, tab -> \\t, backslash -> \\\\, other control
    characters and bytes of non-UTF-8 names -> \\xNN (as in a Python bytes literal)."""
    return _UNPRINTABLE.sub(_escape, text)


def to_json(doc, sort_keys: bool = False) -> str:
    """JSON text that any UTF-8 stream takes: names that are not UTF-8 keep their bytes as
    \\udcNN escapes, which json.loads and os.fsencode turn back into the exact name."""
    text = json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=sort_keys)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
