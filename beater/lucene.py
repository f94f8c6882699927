"""How the engine reads a Lucene query string: its clause structure, for query identity.

``query_string`` queries are parsed by Lucene's classic QueryParser (with Elasticsearch's and
OpenSearch's additions), which has no operator precedence. Clauses are read left to right, each
with a conjunction (AND, OR or none) and a modifier (``+``, ``-``/``NOT``/``!`` or none), and
one rule turns them into MUST / SHOULD / MUST_NOT clauses of a boolean query (``addClause`` in
Lucene's QueryParserBase): AND makes the clause before it and the clause after it required; with
the default operator OR, a clause is otherwise optional; with AND, it is required unless OR
introduces it, and OR makes the clause before it optional. So ``a AND b OR c`` is ``+a +b c``,
and ``a OR b AND c`` is ``a +b +c``. Bare terms in a row (``disk full``) are one piece of text,
analysed together (Lucene's ``MultiTerm``: the engine does not split on whitespace): on a keyword
field that is the one term ``disk full``. A boolean query of only MUST_NOT clauses matches every
other document (the engines add ``*:*``).

This module follows the grammar of Lucene's ``QueryParser.jj`` token by token, so that the
structure it finds is the one the engine builds, then normalises it where the engine's result
does not depend on the difference: clauses are sorted, repeated ones dropped, needless groups
removed. Terms are kept as written (``a\\-b`` and ``"a-b"`` stay different): two strings get one
key only when the engine reads them alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

MUST, SHOULD, MUST_NOT = "+", "", "-"
_ORDER = {MUST: 0, MUST_NOT: 1, SHOULD: 2}


class LuceneSyntaxError(ValueError):
    """The engine's query parser would refuse this string."""


# --- tokens (QueryParser.jj, "Token Definitions") -------------------------------------------

_WHITESPACE = frozenset(" \t\n\r\u3000")
_NOT_TERM_START = _WHITESPACE | frozenset('+-!():^[]"{}~*?\\/')
# Tokens that may not follow the next term of a run of bare terms (allowedPostMultiTerm).
_BREAKS_RUN = frozenset({"COLON", "STAR", "FUZZY_SLOP", "CARAT", "AND", "OR"})


@dataclass(frozen=True)
class Token:
    kind: str
    image: str


def tokenize(text: str, max_tokens: int | None = None) -> list[Token]:
    """The engine's tokens for ``text``, ending with an ``EOF`` token; LuceneSyntaxError past
    ``max_tokens`` (terms need no spaces between them: ``a/b/a/b`` is many)."""
    tokens: list[Token] = []
    position, state = 0, "DEFAULT"
    while True:
        if max_tokens is not None and len(tokens) > max_tokens:
            raise LuceneSyntaxError(f"the query string has more than {max_tokens} tokens")
        if state != "BOOST":
            while position < len(text) and text[position] in _WHITESPACE:
                if state == "RANGE" and _range_goop(text, position) > 1:
                    break  # in a range, a tab starts a longer token than the whitespace it is
                position += 1
        if position == len(text):
            if state != "DEFAULT":
                raise LuceneSyntaxError("the query string ends inside a range or after '^'")
            tokens.append(Token("EOF", ""))
            return tokens
        matcher = {"DEFAULT": _default_token, "BOOST": _boost_token, "RANGE": _range_token}[state]
        kind, length = matcher(text, position)
        if length == 0:
            raise LuceneSyntaxError(f"cannot read the query string at character {position + 1}")
        tokens.append(Token(kind, text[position : position + length]))
        position += length
        if kind == "CARAT":
            state = "BOOST"
        elif kind in ("RANGEIN_START", "RANGEEX_START"):
            state = "RANGE"
        elif kind in ("NUMBER", "RANGEIN_END", "RANGEEX_END"):
            state = "DEFAULT"


def _default_token(text: str, at: int) -> tuple[str, int]:
    """The longest token at ``at``; of equally long ones, the first defined (as JavaCC does)."""
    char = text[at]
    candidates = [
        ("AND", 3 if text.startswith("AND", at) else 2 if text.startswith("&&", at) else 0),
        ("OR", 2 if text.startswith(("OR", "||"), at) else 0),
        ("NOT", 3 if text.startswith("NOT", at) else 1 if char == "!" else 0),
        ("PLUS", int(char == "+")),
        ("MINUS", int(char == "-")),
        ("BAREOPER", 2 if char in "+-!" and text[at + 1 : at + 2] in _WHITESPACE else 0),
        ("LPAREN", int(char == "(")),
        ("RPAREN", int(char == ")")),
        ("COLON", int(char == ":")),
        ("STAR", int(char == "*")),
        ("CARAT", int(char == "^")),
        ("QUOTED", _quoted(text, at)),
        ("TERM", _term(text, at, wild=False)),
        ("FUZZY_SLOP", _fuzzy_slop(text, at)),
        ("PREFIXTERM", _prefix_term(text, at)),
        ("WILDTERM", _term(text, at, wild=True)),
        ("REGEXPTERM", _regexp(text, at)),
        ("RANGEIN_START", int(char == "[")),
        ("RANGEEX_START", int(char == "{")),
    ]
    return max(candidates, key=lambda candidate: candidate[1])  # max keeps the first of equals


def _boost_token(text: str, at: int) -> tuple[str, int]:
    end = _digits(text, at)
    if end > at and text[end : end + 1] == "." and _digits(text, end + 1) > end + 1:
        end = _digits(text, end + 1)
    return "NUMBER", end - at


def _range_token(text: str, at: int) -> tuple[str, int]:
    candidates = [
        ("RANGE_TO", 2 if text.startswith("TO", at) else 0),
        ("RANGEIN_END", int(text[at] == "]")),
        ("RANGEEX_END", int(text[at] == "}")),
        ("RANGE_QUOTED", _range_quoted(text, at)),
        ("RANGE_GOOP", _range_goop(text, at)),
    ]
    return max(candidates, key=lambda candidate: candidate[1])


def _digits(text: str, at: int) -> int:
    while at < len(text) and text[at] in "0123456789":
        at += 1
    return at


def _term_char(text: str, at: int, start: bool, wild: bool) -> int:
    """The length of the term character at ``at`` (2 for an escaped one), or 0."""
    if at >= len(text):
        return 0
    char = text[at]
    if char == "\\":
        return 2 if at + 1 < len(text) else 0
    if wild and char in "*?":
        return 1
    if not start and char in "+-":
        return 1
    return int(char not in _NOT_TERM_START)


def _term(text: str, at: int, wild: bool) -> int:
    """TERM (``wild`` False), or WILDTERM, which may also hold ``*`` and ``?``."""
    length = _term_char(text, at, start=True, wild=wild)
    if not length:
        return 0
    end = at + length
    while step := _term_char(text, end, start=False, wild=wild):
        end += step
    if wild and not set(_unescaped(text[at:end])) & set("*?"):
        return 0  # no wildcard in it: a TERM, which is defined first
    return end - at


def _unescaped(image: str) -> str:
    """``image`` without its escaped characters (which are never operators)."""
    out, skip = [], False
    for char in image:
        if skip:
            skip = False
        elif char == "\\":
            skip = True
        else:
            out.append(char)
    return "".join(out)


def _prefix_term(text: str, at: int) -> int:
    if text[at] == "*":
        return 1
    length = _term(text, at, wild=False)
    return length + 1 if length and text[at + length : at + length + 1] == "*" else 0


def _fuzzy_slop(text: str, at: int) -> int:
    if text[at] != "~":
        return 0
    end = at + 1
    while step := _term_char(text, end, start=False, wild=False):
        end += step
    return end - at


def _quoted(text: str, at: int) -> int:
    if text[at] != '"':
        return 0
    end = at + 1
    while end < len(text) and text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    return end + 1 - at if end < len(text) else 0


def _regexp(text: str, at: int) -> int:
    # "/" (~["/"] | "\\/")* "/": the longest match ends at the first unescaped slash, or else at
    # the last escaped one.
    if text[at] != "/":
        return 0
    end, last = at + 1, 0
    while end < len(text):
        if text[end] == "/":
            if text[end - 1] != "\\" or end == at + 1:
                return end + 1 - at
            last = end + 1 - at
        end += 1
    return last


def _range_quoted(text: str, at: int) -> int:
    # "\"" (~["\""] | "\\\"")+ "\"", read like a regular expression term.
    if text[at] != '"':
        return 0
    end, last = at + 1, 0
    while end < len(text):
        if text[end] == '"' and end > at + 1:
            if text[end - 1] != "\\":
                return end + 1 - at
            last = end + 1 - at
        end += 1
    return last


def _range_goop(text: str, at: int) -> int:
    end = at
    while end < len(text) and text[end] not in " ]}":
        end += 1
    return end - at


# --- the structure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One term, phrase, range, pattern or run of bare terms, on its field (None: the default).

    ``kind`` is the token's (TERM, QUOTED, PREFIXTERM, WILDTERM, REGEXPTERM, STAR, BAREOPER),
    RANGE, or RUN for bare terms in a row, analysed as one text. ``text`` is as written, with
    its slop and boost; a range's ``bounds`` are its two ends as written.
    """

    field: str | None
    kind: str
    text: str
    bounds: tuple[str, str] | None = None


@dataclass(frozen=True)
class Group:
    """A boolean query: ``(occur, node)`` clauses, occur being MUST, SHOULD or MUST_NOT."""

    clauses: tuple[tuple[str, Node], ...]


@dataclass(frozen=True)
class Boosted:
    """A parenthesised group with a boost, ``(...)^2``, whose inside is a single clause."""

    node: Node
    boost: str


Node = Union[Leaf, Group, Boosted]  # noqa: UP007 - a forward reference, which `|` cannot take


def parse(text: str, default_operator: str = "OR", max_tokens: int | None = None) -> Node:
    """The clause structure the engine builds from ``text``; LuceneSyntaxError if it cannot."""
    return _Parser(tokenize(text, max_tokens), default_operator.upper() == "AND").top()


@dataclass
class _Parser:
    tokens: list[Token]
    and_operator: bool
    at: int = 0
    _clauses: list = field(default_factory=list)

    def kind(self, ahead: int = 0) -> str:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)].kind

    def take(self, *kinds: str) -> Token:
        token = self.tokens[self.at]
        if token.kind not in kinds:
            shown = token.image or "the end"
            raise LuceneSyntaxError(f"unexpected {shown!r}: expected {' or '.join(kinds).lower()}")
        self.at += 1
        return token

    def top(self) -> Node:
        node = self.query(None)
        self.take("EOF")
        return node

    def query(self, field: str | None) -> Node:
        clauses: list[tuple[str, Node]] = []
        first: Node | None = None
        if self.run_ahead():
            first = self.run(field, clauses)
        else:
            modifier = self.modifier()
            node = self.clause(field)
            self.add(clauses, None, modifier, node)
            if modifier is None:
                first = node
        while True:
            if self.run_ahead():
                self.run(field, clauses)
            elif self.kind() in _CLAUSE_START:
                conjunction = self.take(self.kind()).kind if self.kind() in ("AND", "OR") else None
                modifier = self.modifier()
                self.add(clauses, conjunction, modifier, self.clause(field))
            else:
                break
        if len(clauses) == 1 and first is not None:
            return first
        return Group(tuple(clauses))

    def run_ahead(self) -> bool:
        return self.kind() == "TERM" and self.kind(1) == "TERM" and self.kind(2) not in _BREAKS_RUN

    def run(self, field: str | None, clauses: list) -> Node:
        words = [self.take("TERM").image]
        while self.kind() == "TERM" and self.kind(1) not in _BREAKS_RUN:
            words.append(self.take("TERM").image)
        node = Leaf(field, "RUN", " ".join(words))
        clauses.append((MUST if self.and_operator else SHOULD, node))
        return node

    def modifier(self) -> str | None:
        kind = self.kind()
        if kind in ("PLUS", "MINUS", "NOT"):
            self.at += 1
            return MUST if kind == "PLUS" else MUST_NOT
        return None

    def add(self, clauses: list, conjunction: str | None, modifier: str | None, node: Node) -> None:
        """Lucene's QueryParserBase.addClause."""
        if clauses and conjunction == "AND" and clauses[-1][0] != MUST_NOT:
            clauses[-1] = (MUST, clauses[-1][1])
        if clauses and self.and_operator and conjunction == "OR" and clauses[-1][0] != MUST_NOT:
            clauses[-1] = (SHOULD, clauses[-1][1])
        if modifier == MUST_NOT:
            occur = MUST_NOT
        elif self.and_operator:
            occur = SHOULD if conjunction == "OR" else MUST  # even `OR +a` is optional then
        else:
            occur = MUST if modifier == MUST or conjunction == "AND" else SHOULD
        clauses.append((occur, node))

    def clause(self, field: str | None) -> Node:
        if self.kind() in ("TERM", "STAR") and self.kind(1) == "COLON":
            name = self.take("TERM", "STAR").image
            self.take("COLON")
            field = _unescaped_field(name)
        if self.kind() == "LPAREN":
            self.take("LPAREN")
            node = self.query(field)
            self.take("RPAREN")
            if self.kind() == "CARAT":
                self.take("CARAT")
                return Boosted(node, self.take("NUMBER").image)
            return node
        return self.term(field)

    def term(self, field: str | None) -> Node:
        kind = self.kind()
        if kind in ("TERM", "STAR", "PREFIXTERM", "WILDTERM", "REGEXPTERM", "BAREOPER", "QUOTED"):
            image = self.take(kind).image
            if kind == "BAREOPER":
                image = image[0]
            return Leaf(field, kind, image + self.boost_and_slop())
        if kind in ("RANGEIN_START", "RANGEEX_START"):
            start = self.take(kind).image
            low = self.take("RANGE_GOOP", "RANGE_QUOTED", "RANGE_TO").image
            self.take("RANGE_TO")
            high = self.take("RANGE_GOOP", "RANGE_QUOTED", "RANGE_TO").image
            end = self.take("RANGEIN_END", "RANGEEX_END").image
            boost = ""
            if self.kind() == "CARAT":
                self.take("CARAT")
                boost = "^" + self.take("NUMBER").image
            return Leaf(field, "RANGE", f"{start}{low} TO {high}{end}{boost}", (low, high))
        raise LuceneSyntaxError(f"unexpected {self.tokens[self.at].image or 'end'!r}: expected a term")

    def boost_and_slop(self) -> str:
        """``~slop`` and ``^boost``, in either order in the string; always slop first here."""
        slop = boost = ""
        for _ in range(2):
            if self.kind() == "CARAT" and not boost:
                self.take("CARAT")
                boost = "^" + self.take("NUMBER").image
            elif self.kind() == "FUZZY_SLOP" and not slop:
                slop = self.take("FUZZY_SLOP").image
        return slop + boost


_CLAUSE_START = frozenset(
    {
        "AND",
        "OR",
        "PLUS",
        "MINUS",
        "NOT",
        "TERM",
        "STAR",
        "PREFIXTERM",
        "WILDTERM",
        "REGEXPTERM",
        "BAREOPER",
        "QUOTED",
        "LPAREN",
        "RANGEIN_START",
        "RANGEEX_START",
    }
)


def _unescaped_field(image: str) -> str:
    """A field name as the engine takes it (QueryParserBase.discardEscapeChar)."""
    out, escaped = [], False
    for char in image:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)


# --- normalising -----------------------------------------------------------------------------


def normalise(node: Node, should_counts: bool = False) -> Node:
    """``node`` with clauses sorted, repeats dropped and needless groups removed, where the
    engine's matches do not depend on it. ``should_counts``: a ``minimum_should_match`` applies,
    so the structure is kept as it is."""
    if should_counts:
        return node
    if isinstance(node, Boosted):
        return Boosted(normalise(node.node), node.boost)
    if isinstance(node, Leaf):
        return node
    clauses: dict[str, tuple[str, Node]] = {}
    for occur, child in node.clauses:
        child = normalise(child)
        # A group inside a group of the same kind adds nothing: (a AND b) AND c, (a OR b) OR c.
        # (Not under MUST_NOT: a group of MUST_NOT clauses alone matches everything else.)
        if isinstance(child, Group) and occur != MUST_NOT and all(o == occur for o, _ in child.clauses):
            parts = child.clauses
        else:
            parts = ((occur, child),)
        for part in parts:
            clauses.setdefault(key(part[1], part[0]), part)  # a AND a is a
    if len(clauses) == 1:
        ((occur, child),) = clauses.values()
        if occur != MUST_NOT:
            return child  # (a), (+a): one required or optional clause is that clause
    ordered = sorted(clauses.items(), key=lambda item: (_ORDER[item[1][0]], item[0]))
    return Group(tuple(clause for _, clause in ordered))


def key(node: Node, occur: str = "") -> str:
    """An unambiguous text for a structure (hashed for an ID; not a query string)."""
    return json.dumps(_plain(node, occur), ensure_ascii=False, separators=(",", ":"))


def _plain(node: Node, occur: str = "") -> list:
    if isinstance(node, Leaf):
        return [occur, node.kind, node.field, node.text]
    if isinstance(node, Boosted):
        return [occur, "boost", node.boost, _plain(node.node)]
    return [occur, "bool", [_plain(child, child_occur) for child_occur, child in node.clauses]]


def describe(node: Node) -> str:
    """The structure in Lucene's explicit notation (``+a +b c``), as a person would read it."""
    if isinstance(node, Leaf):
        return f"{_escaped_field(node.field)}:{node.text}" if node.field is not None else node.text
    if isinstance(node, Boosted):
        return f"({describe(node.node)})^{node.boost}"
    parts = []
    for occur, child in node.clauses:
        text = describe(child)
        if isinstance(child, Group) or (isinstance(child, Leaf) and child.kind == "RUN"):
            text = f"({text})"
        parts.append(occur + text)
    return " ".join(parts)


def _escaped_field(name: str) -> str:
    return "".join("\\" + char if char in _NOT_TERM_START and char != "*" else char for char in name)


def leaves(node: Node) -> Iterator[Leaf]:
    """Every leaf of ``node``."""
    if isinstance(node, Leaf):
        yield node
    elif isinstance(node, Boosted):
        yield from leaves(node.node)
    else:
        for _, child in node.clauses:
            yield from leaves(child)
