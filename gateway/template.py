"""URL path templates as ``google.api.http`` defines them.

Grammar (google/api/http.proto)::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

``{name}`` is short for ``{name=*}``. ``*`` matches one segment, ``**`` zero or
more and may only come last. A variable over one segment is fully
percent-decoded; over several, ``%2F`` stays encoded so the value's slashes
are the path's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENCODED_SLASH = re.compile(r"(%2[Ff])")
_FORBIDDEN_IN_LITERAL = set("/{}:=*")

STAR = "*"
DOUBLE_STAR = "**"


class TemplateError(ValueError):
    """A path template that does not follow the grammar."""


@dataclass(frozen=True, slots=True)
class Variable:
    """A ``{field.path=...}`` part of a template."""

    field_path: tuple[str, ...]
    """Dotted path of the request field the value goes to, split."""
    start: int
    """Index of the variable's first segment in the template."""
    end: int
    """Index after its last segment."""

    @property
    def name(self) -> str:
        """The field path as written, e.g. ``task.task_id``."""
        return ".".join(self.field_path)


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """A parsed template; ``match`` binds a request path to its variables."""

    text: str
    """The template as written."""
    segments: tuple[str, ...]
    """Literal segments, ``*`` and ``**``; variables are expanded in place."""
    variables: tuple[Variable, ...]
    verb: str | None
    """The custom verb after ``:``, without the colon."""

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        """Parse ``text``; raises ``TemplateError`` naming the problem."""
        return _Parser(text).parse()

    @property
    def specificity(self) -> tuple[tuple[int, ...], int]:
        """Sort key: larger is more specific.

        Literal segments beat variables, which beat ``**``, compared from the
        left; a template with a verb beats one without.
        """
        rank = {STAR: 1, DOUBLE_STAR: 0}
        return tuple(rank.get(s, 2) for s in self.segments), int(self.verb is not None)

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Variables bound by ``raw_path`` (still percent-encoded), or None."""
        if not raw_path.startswith("/"):
            return None
        rest = raw_path[1:]
        if self.verb is not None:
            suffix = ":" + self.verb
            if not rest.endswith(suffix):
                return None
            rest = rest[: -len(suffix)]
        parts = rest.split("/")
        n = len(self.segments)
        deep = n > 0 and self.segments[-1] == DOUBLE_STAR
        if (len(parts) < n - 1) if deep else (len(parts) != n):
            return None
        for i, seg in enumerate(self.segments):
            if seg == DOUBLE_STAR:
                break
            part = parts[i]
            if seg == STAR:
                if not part:
                    return None
            elif unquote(part) != seg:
                return None
        out: dict[str, str] = {}
        for var in self.variables:
            end = len(parts) if (deep and var.end == n) else var.end
            chunk = parts[var.start : end]
            if self.single_segment(var):
                out[var.name] = unquote(chunk[0])
            else:
                out[var.name] = "/".join(_unquote_keep_slash(p) for p in chunk)
        return out

    def single_segment(self, var: Variable) -> bool:
        """Whether ``var`` always binds exactly one path segment."""
        pattern = self.segments[var.start : var.end]
        return len(pattern) == 1 and pattern[0] != DOUBLE_STAR

    def __str__(self) -> str:
        return self.text


def _unquote_keep_slash(part: str) -> str:
    return "".join(
        piece if _ENCODED_SLASH.fullmatch(piece) else unquote(piece)
        for piece in _ENCODED_SLASH.split(part)
    )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.segments: list[str] = []
        self.variables: list[Variable] = []

    def fail(self, why: str) -> TemplateError:
        return TemplateError(f"path template {self.text!r}: {why} (at {self.pos})")

    def parse(self) -> PathTemplate:
        if not self.text.startswith("/"):
            raise self.fail("must start with '/'")
        self.pos = 1
        verb: str | None = None
        while True:
            if self.peek() == "{":
                self.variable()
            else:
                self.segments.append(self.plain_segment())
            nxt = self.peek()
            if nxt == "":
                break
            if nxt == "/":
                self.pos += 1
                continue
            if nxt == ":":
                verb = self.text[self.pos + 1 :]
                if not verb or any(c in _FORBIDDEN_IN_LITERAL for c in verb):
                    raise self.fail(f"bad verb {verb!r}")
                break
            raise self.fail(f"unexpected {nxt!r}")
        self.check()
        return PathTemplate(self.text, tuple(self.segments), tuple(self.variables), verb)

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def plain_segment(self) -> str:
        start = self.pos
        while self.peek() not in ("", "/", ":"):
            self.pos += 1
        seg = self.text[start : self.pos]
        if seg in (STAR, DOUBLE_STAR):
            return seg
        if not seg or any(c in _FORBIDDEN_IN_LITERAL for c in seg):
            raise self.fail(f"bad segment {seg!r}")
        return seg

    def variable(self) -> None:
        close = self.text.find("}", self.pos)
        if close < 0:
            raise self.fail("unclosed '{'")
        inner = self.text[self.pos + 1 : close]
        name, eq, pattern = inner.partition("=")
        path = tuple(name.split("."))
        if not all(_IDENT.fullmatch(p) for p in path):
            raise self.fail(f"bad field path {name!r}")
        if any(v.field_path == path for v in self.variables):
            raise self.fail(f"field {name!r} bound twice")
        if eq and not pattern:
            raise self.fail(f"empty pattern for {name!r}")
        segs = pattern.split("/") if eq else [STAR]
        for seg in segs:
            if seg not in (STAR, DOUBLE_STAR) and (
                not seg or any(c in _FORBIDDEN_IN_LITERAL for c in seg)
            ):
                raise self.fail(f"bad segment {seg!r} in variable {name!r}")
        start = len(self.segments)
        self.segments.extend(segs)
        self.variables.append(Variable(path, start, len(self.segments)))
        self.pos = close + 1

    def check(self) -> None:
        for i, seg in enumerate(self.segments):
            if seg == DOUBLE_STAR and i != len(self.segments) - 1:
                raise self.fail("'**' must be the last segment")


__all__ = ["PathTemplate", "TemplateError", "Variable"]
