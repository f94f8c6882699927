"""The engine only for documents that can match: a presearcher, as Lucene's Monitor (Luwak) has.

For each listened-to query Beater derives an *anchor*: atoms of which every document the query
matches meets at least one, decided here exactly as the engine would. A batch's documents that
meet no listened-to query's anchor are not percolated. A query with no anchor makes every
document a candidate. An atom is one of:

- ``eq``: a keyword field (no normalizer, no ``null_value``) has a value equal to a term: the
  engine indexes a string value as it is;
- ``has``: a text field analysed by the standard analyzer has a value with a given *run* (a
  longest stretch of ASCII letters and digits, once lower-cased): every token of that analyzer
  is a piece of the value lower-cased one character at a time (Java's
  ``Character.toLowerCase``, under which only ASCII letters, U+0130 and U+212A become ASCII),
  the tokenizer never cuts a run (but past 255 characters: such a value meets every atom), so a
  token's runs are runs of the value, and a query token holds a run of the query's text;
- ``exists``: the document has a non-null value at a field's path, or under it.

A whole number or a boolean is taken as the engine's text of it (``500``, ``true``); any other
value that is not a string (a fraction) meets every atom: its text is not reproduced here. Anchors come from required clauses only: ``term``, ``terms``, ``match``,
``match_phrase``, ``exists``, ``bool`` (``must``, ``filter``; ``should`` when it alone decides),
``constant_score``, and ``query_string`` terms, phrases and runs on a named field (parsed as the
engine parses them, beater/lucene.py). Anything else (ranges, patterns, fuzzy terms, scripts,
nested queries, default fields, another analyzer) gives no atom for that clause.

The percolator index's mapping decides the kinds; a field that ``copy_to`` copies into (as
``estrom_all`` of an index made without a source) or a runtime field shadows has none, and an
index with a default analyzer of its own has no text anchors. The mapping is read again every ``mapping_seconds`` (60),
and at once when this Beater changes it: a ``copy_to`` that another Beater or an operator adds
to a field already mapped is seen within that time.

Queries registered or looked up through another Beater within the listened-to window are
percolated too (beater/percolator.py) though this Beater has no anchor for them: a batch whose
documents are not all candidates first asks the engine whether there is any (a count).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from beater import lucene
from beater.engine import Engine, EngineError, EngineUnavailable, path
from beater.indexes import QUERY_FIELD

log = Logger()

Atom = tuple[str, str, str]  # (kind: "eq", "has" or "exists", the field's path in a document, the term)
Anchor = frozenset[Atom]  # a document meets one of them
NOTHING: Anchor = frozenset()  # an anchor met by no document
ABSENT_SECONDS = 1.0  # a query the index had not is asked for again this much later

# What Java's Character.toLowerCase makes ASCII: ASCII capitals, U+0130 and U+212A (checked with
# Java 17 over every code point).
_FOLD = {**{code: code + 32 for code in range(ord("A"), ord("Z") + 1)}, 0x130: ord("i"), 0x212A: ord("k")}
_RUN = re.compile(r"[a-z0-9]+")
_MAX_TOKEN = 255  # the standard tokenizer's max_token_length: a longer run is split
_PLAIN_TERM = re.compile(r'[^\\*?~^"\s]+')
_PHRASE = re.compile(r'"([^"\\]*)"')
# The options of a query_string clause an anchor may be taken with (default fields are only for
# terms without a field, which give no atom).
_QUERY_STRING_OPTIONS = frozenset({"query", "default_operator", "default_field", "fields"})
_MATCH_OPTIONS = frozenset({"query", "operator", "boost", "_name"})
_BOOL_OPTIONS = frozenset({"must", "filter", "should", "must_not", "boost", "_name"})
# Ask for the queries' clauses this many at a time.
_FETCHED_AT_ONCE = 500
_KEPT_UNLISTENED = 1024  # anchors kept of queries no longer listened to, before they go


@dataclass
class Fields:
    """A percolator index's mapping as the presearcher reads it."""

    kinds: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (kind, path)
    usable: bool = True  # False: no anchor at all (the index is not there)


def read_mapping(mapping: dict[str, Any], settings: dict[str, Any]) -> Fields:
    """``GET <index>/_mapping``'s ``mappings`` and ``GET <index>/_settings``'s ``settings``.

    A field that something else is copied into (``copy_to``, in a field or a dynamic template)
    or that a runtime field of the same name shadows has no kind: its values are not only the
    document's own. An alias has none either (a query on it gives no atom)."""
    fields = Fields()
    analyzers = settings.get("index", {}).get("analysis", {}).get("analyzer", {})
    standard = not ({"default", "default_search"} & set(analyzers))
    shadowed = set(mapping.get("runtime", {}))
    for template in mapping.get("dynamic_templates", []):
        for spec in template.values():
            _copied(spec.get("mapping", {}), shadowed)
    _read_properties(mapping.get("properties", {}), "", standard, fields, shadowed)
    if any("{" in name for name in shadowed):  # a template's copy_to named after the field
        return Fields(usable=False)
    fields.kinds = {
        name: kind
        for name, kind in fields.kinds.items()
        if not any(name == other or name.startswith(other + ".") for other in shadowed)
    }
    return fields


def _copied(spec: dict[str, Any], into: set[str]) -> None:
    """The fields ``spec`` (and its multi-fields) copy into."""
    for one in [spec, *spec.get("fields", {}).values()]:
        targets = one.get("copy_to", [])
        into.update([targets] if isinstance(targets, str) else targets)


def _read_properties(
    properties: dict[str, Any], prefix: str, standard: bool, into: Fields, copied: set[str]
) -> None:
    for name, spec in properties.items():
        where = prefix + name
        _copied(spec, copied)
        if "properties" in spec:
            _read_properties(spec["properties"], where + ".", standard, into, copied)
            continue
        kind = _kind(spec, standard)
        if kind:
            into.kinds[where] = (kind, where)
        for sub, subspec in spec.get("fields", {}).items():
            kind = _kind(subspec, standard)
            if kind:
                into.kinds[f"{where}.{sub}"] = (kind, where)


def _kind(spec: dict[str, Any], standard: bool) -> str | None:
    if spec.get("index") is False:
        return None
    if spec.get("type") == "keyword" and not {"normalizer", "null_value"} & set(spec):
        return "eq"
    analyzers = {"analyzer", "search_analyzer", "search_quote_analyzer"}
    if spec.get("type") == "text" and standard and not analyzers & set(spec):
        return "has"
    return None


# --- anchors: what a query needs ---------------------------------------------------------------


def anchor(clause: Any, fields: Fields) -> Anchor | None:
    """The anchor of a stored query clause, or None (any document may match it)."""
    if not fields.usable:
        return None
    groups = _groups(clause, fields)
    if not groups:
        return None
    # The most selective-looking: fewest atoms, equalities first, then the longest words.
    return min(groups, key=lambda group: (len(group), *sorted(_rank(atom) for atom in group)))


def _rank(atom: Atom) -> tuple[int, int]:
    kind, _, term = atom
    return ({"eq": 0, "has": 1, "exists": 2}[kind], -len(term))


def _groups(clause: Any, fields: Fields) -> list[Anchor]:
    """Groups of atoms each of which a matching document meets one of."""
    if not isinstance(clause, dict) or len(clause) != 1:
        return []
    ((kind, body),) = clause.items()
    if not isinstance(body, dict):
        return []
    if kind == "bool":
        return _bool_groups(body, fields)
    if kind == "constant_score":
        return _groups(body.get("filter"), fields) if set(body) <= {"filter", "boost", "_name"} else []
    if kind == "query_string":
        return _query_string_groups(body, fields)
    if kind == "exists":
        found = fields.kinds.get(body.get("field")) if set(body) <= {"field", "boost", "_name"} else None
        return [frozenset({("exists", found[1], "")})] if found else []
    if kind in ("term", "terms", "match", "match_phrase"):
        named = [name for name in body if name not in ("boost", "_name")]
        if len(named) != 1 or named[0] not in fields.kinds:
            return []
        value_kind, where = fields.kinds[named[0]]
        return _field_groups(kind, body[named[0]], value_kind, where)
    return []


def _bool_groups(body: dict[str, Any], fields: Fields) -> list[Anchor]:
    if not set(body) <= _BOOL_OPTIONS:
        return []  # minimum_should_match, say
    required = [*_listed(body.get("must")), *_listed(body.get("filter"))]
    groups = [group for clause in required for group in _groups(clause, fields)]
    should = _listed(body.get("should"))
    if not required and should:  # then at least one should clause matches
        groups += _one_of([_groups(clause, fields) for clause in should])
    return groups


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _one_of(alternatives: list[list[Anchor]]) -> list[Anchor]:
    """The group that one of several alternatives needs: the union of a group of each."""
    if not alternatives or any(not groups for groups in alternatives):
        return []
    return [frozenset().union(*(min(groups, key=len) for groups in alternatives))]


def _field_groups(kind: str, value: Any, value_kind: str, where: str) -> list[Anchor]:
    if kind == "term":
        if isinstance(value, dict):
            if not set(value) <= {"value", "boost", "_name"}:
                return []  # case_insensitive, say
            value = value.get("value")
        return [frozenset({atom})] if (atom := _term_atom(value, value_kind, where)) else []
    if kind == "terms":
        if not isinstance(value, list) or not value:
            return []
        atoms = [_term_atom(item, value_kind, where) for item in value]
        return [frozenset(atoms)] if all(atoms) else []
    if isinstance(value, dict):  # match, match_phrase: options
        if not set(value) <= _MATCH_OPTIONS:
            return []
        value = value.get("query")
    if not isinstance(value, str):
        return []
    if value_kind == "eq":
        return [frozenset({("eq", where, value)})]  # a keyword field's match is its term
    words = _runs(value)
    if words is None:
        return []
    if kind == "match_phrase":
        return [frozenset({("has", where, word)}) for word in words]  # every word of a phrase
    return [frozenset(("has", where, word) for word in words)]  # one of them (operator or, at least)


def _term_atom(value: Any, value_kind: str, where: str) -> Atom | None:
    """A term query's atom: the term itself (not analysed), a string; on a text field the term
    is a token, whose runs are the value's (one of them will do)."""
    if not isinstance(value, str):
        return None
    if value_kind == "eq":
        return ("eq", where, value)
    words = _runs(value)
    return ("has", where, max(words, key=len)) if words else None


def _runs(text: str) -> list[str] | None:
    """The runs of ASCII letters and digits of ``text`` lower-cased: each token of the standard
    analyzer holds one; None when that cannot be said (other letters, a run split for length)."""
    if not text.isascii():
        return None
    words = _RUN.findall(text.lower())
    if not words or any(len(word) > _MAX_TOKEN for word in words):
        return None
    return words


def _query_string_groups(body: dict[str, Any], fields: Fields) -> list[Anchor]:
    text = body.get("query")
    if not isinstance(text, str) or not set(body) <= _QUERY_STRING_OPTIONS:
        return []
    try:
        node = lucene.parse(text, str(body.get("default_operator", "OR")))
    except lucene.LuceneSyntaxError:
        return []
    return _node_groups(node, fields)


def _node_groups(node: lucene.Node, fields: Fields) -> list[Anchor]:
    if isinstance(node, lucene.Boosted):
        return _node_groups(node.node, fields)
    if isinstance(node, lucene.Leaf):
        return _leaf_groups(node, fields)
    required = [child for occur, child in node.clauses if occur == lucene.MUST]
    should = [child for occur, child in node.clauses if occur == lucene.SHOULD]
    if required:
        return [group for child in required for group in _node_groups(child, fields)]
    return _one_of([_node_groups(child, fields) for child in should])


def _leaf_groups(leaf: lucene.Leaf, fields: Fields) -> list[Anchor]:
    if leaf.field is None or leaf.field not in fields.kinds:
        return []  # default fields, a pattern of fields, or one not mapped
    value_kind, where = fields.kinds[leaf.field]
    if leaf.kind == "QUOTED":
        quoted = _PHRASE.fullmatch(leaf.text)
        if not quoted:
            return []  # slop, boost or escapes
        if value_kind == "eq":
            return [frozenset({("eq", where, quoted.group(1))})]
        words = _runs(quoted.group(1))
        return [frozenset({("has", where, word)}) for word in words] if words else []
    if leaf.kind not in ("TERM", "RUN") or not _PLAIN_TERM.fullmatch(leaf.text.replace(" ", "_")):
        return []
    if value_kind == "eq":
        return [frozenset({("eq", where, leaf.text)})] if leaf.kind == "TERM" else []
    words = _runs(leaf.text)
    return [frozenset(("has", where, word) for word in words)] if words else []


# --- candidates: which documents meet an anchor ----------------------------------------------


class Anchors:
    """The anchors of a batch's queries, by the path they look at."""

    def __init__(self, anchors: Iterable[Anchor]):
        self.equal: dict[str, set[str]] = {}
        self.words: dict[str, set[str]] = {}
        self.exists: set[str] = set()
        for group in anchors:
            for kind, where, term in group:
                if kind == "eq":
                    self.equal.setdefault(where, set()).add(term)
                elif kind == "has":
                    self.words.setdefault(where, set()).add(term)
                else:
                    self.exists.add(where)
        self.paths = sorted(set(self.equal) | set(self.words) | self.exists)

    def met(self, document: dict) -> bool:
        """Whether ``document`` meets an atom of some anchor."""
        for where in self.paths:
            values: list[Any] = []
            _collect(document, where, values)
            if not values:
                continue
            if where in self.exists:
                return True
            equal, words = self.equal.get(where, ()), self.words.get(where, ())
            for value in values:
                if isinstance(value, bool):
                    value = "true" if value else "false"  # the engine's text of it
                elif isinstance(value, int):
                    value = str(value)
                elif not isinstance(value, str):
                    return True  # a fraction's text is not reproduced here
                if value in equal:
                    return True
                if words:
                    runs = _RUN.findall(value.translate(_FOLD))
                    if not words.isdisjoint(runs) or any(len(run) > _MAX_TOKEN for run in runs):
                        return True
        return False


def _collect(value: Any, where: str, into: list[Any]) -> None:
    """The non-null values at a field's path (``a.b`` as ``{"a": {"b": ...}}``, ``{"a.b": ...}``
    and objects in arrays alike), and under it (its objects' fields), into ``into``."""
    if isinstance(value, list):
        for item in value:
            _collect(item, where, into)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == where:
                _leaves(item, into)
            elif where.startswith(key + "."):
                _collect(item, where[len(key) + 1 :], into)


def _leaves(value: Any, into: list[Any]) -> None:
    if isinstance(value, list):
        for item in value:
            _leaves(item, into)
    elif isinstance(value, dict):
        for item in value.values():
            _leaves(item, into)
    elif value is not None:
        into.append(value)


# --- the presearcher -------------------------------------------------------------------------


class Presearcher:
    """Keeps the anchors of listened-to queries (read from the engine once each, in the
    background: until then every document is a candidate) and picks a batch's candidates."""

    def __init__(
        self,
        engine: Engine,
        index_of: Callable[[str], str],
        mapping_seconds: float = 60.0,
        clock: IReactorTime = default_reactor,
        absent_seconds: float = ABSENT_SECONDS,
    ):
        self.engine = engine
        self.index_of = index_of  # the name of an index's percolator index
        self.mapping_seconds = mapping_seconds  # how often a mapping is read again
        self.absent_seconds = absent_seconds
        self._clock = clock
        # (index, query ID) -> its anchor, None for none, NOTHING for a query the index has not.
        self._anchors: dict[tuple[str, str], Anchor | None] = {}
        # query ID -> the index it was found in. An ID is of one index (beater.identity): in
        # every other, the query matches nothing, with no need to ask.
        self._home: dict[str, str] = {}
        # The queries the index had not when asked, and when: a subscriber may subscribe before
        # it registers, so they are asked for again after ``absent_seconds``. Meanwhile they are
        # met by no document, and ``anchored`` leaves them out: a batch that leaves documents out
        # asks the engine whether a query of the index not anchored here was registered lately.
        self._absent: dict[tuple[str, str], float] = {}
        self._fields: dict[str, tuple[Fields, float]] = {}  # index -> its mapping, and when read
        self._reading: set[str] = set()  # indexes whose mapping or anchors are being read
        # By index: the anchors of the queries last listened to, and what they were taken from.
        self._chosen: dict[str, tuple[int, list[str], Anchors | None]] = {}
        self._generation = 0  # changed whenever an anchor or a mapping is

    def candidates(self, index: str, documents: list[dict], only: list[str]) -> list[int] | None:
        """The positions of the documents that may match a query of ``only`` (those listened
        to), or None: every one may (or not all anchors are known yet)."""
        if self._absent:
            self._ask_again()
        known = self._fields.get(index)
        if known is None or self._clock.seconds() - known[1] > self.mapping_seconds:
            self._read(index, [])  # meanwhile, an old mapping is as good as it was
            if known is None:
                return None
        cached = self._chosen.get(index)
        if cached is not None and cached[0] == self._generation and cached[1] == only:
            chosen = cached[2]
        else:  # the listened-to queries changed (or what is known of them)
            if len(self._anchors) > 2 * len(only) + _KEPT_UNLISTENED:
                self._keep(set(only))
            mine = [query_id for query_id in only if self._home.get(query_id, index) == index]
            missing = [query_id for query_id in mine if (index, query_id) not in self._anchors]
            if missing:
                self._read(index, missing)
                return None
            anchors = [self._anchors[index, query_id] for query_id in mine]
            usable = known[0].usable and None not in anchors
            chosen = Anchors(anchors) if usable else None
            self._chosen[index] = (self._generation, list(only), chosen)
        if chosen is None:
            return None
        return [position for position, document in enumerate(documents) if chosen.met(document)]

    def remapped(self, index: str) -> None:
        """``index``'s percolator index was given another mapping: read it before choosing."""
        self._fields.pop(index, None)
        self._generation += 1

    def anchored(self, index: str, only: list[str]) -> list[str]:
        """Of ``only``, the queries ``index`` has (whose anchors chose the candidates): a query
        registered or looked up through another Beater within the window that is not one of
        them may match a document that is not a candidate."""
        if not self._absent:
            return only
        return [query_id for query_id in only if (index, query_id) not in self._absent]

    def _ask_again(self) -> None:
        now = self._clock.seconds()
        for key, when in list(self._absent.items()):
            if now - when > self.absent_seconds:
                del self._absent[key]
                self._anchors.pop(key, None)
                self._generation += 1

    def _read(self, index: str, missing: list[str]) -> None:
        if index in self._reading:
            return
        self._reading.add(index)
        reading = Deferred.fromCoroutine(self._read_now(index, missing))
        reading.addBoth(lambda _: self._reading.discard(index))

    async def _read_now(self, index: str, missing: list[str]) -> None:
        name = self.index_of(index)
        try:
            known = self._fields.get(index)
            if known is None or self._clock.seconds() - known[1] > self.mapping_seconds:
                fields = await self._mapping(name)
                if known is not None and (known[0].kinds != fields.kinds or not fields.usable):
                    # Anchors were taken with other kinds (the index was made again): read them again.
                    self._forget(index, lambda anchor: True)
                self._fields[index] = (fields, self._clock.seconds())
                self._generation += 1
                return  # the next batch asks for the anchors it misses
            fields = known[0]
            for start in range(0, len(missing), _FETCHED_AT_ONCE):
                ids = missing[start : start + _FETCHED_AT_ONCE]
                answer = await self.engine.request(
                    "POST", path(name, "_mget"), {"ids": ids}, params={"_source": QUERY_FIELD}
                )
                for found in answer.get("docs", []):
                    clause = found.get("_source", {}).get(QUERY_FIELD) if found.get("found") else None
                    key = (index, found["_id"])
                    if clause is None:
                        self._anchors[key] = NOTHING
                        self._absent[key] = self._clock.seconds()
                    else:
                        self._anchors[key] = anchor(clause, fields)
                        self._home[found["_id"]] = index
                self._generation += 1
        except (EngineError, EngineUnavailable) as e:
            log.warn("Beater: cannot read the anchors of {index}'s queries: {error}", index=index, error=e)

    def _keep(self, listened: set[str]) -> None:
        """Forget what was read of the queries not ``listened`` to (memory stays bounded)."""
        self._anchors = {key: found for key, found in self._anchors.items() if key[1] in listened}
        self._absent = {key: when for key, when in self._absent.items() if key[1] in listened}
        self._home = {query_id: index for query_id, index in self._home.items() if query_id in listened}
        self._generation += 1

    def _forget(self, index: str, which: Callable[[Anchor | None], bool]) -> None:
        for key in [key for key, anchor in self._anchors.items() if key[0] == index and which(anchor)]:
            del self._anchors[key]
        self._generation += 1

    async def _mapping(self, name: str) -> Fields:
        try:
            mapping = await self.engine.request("GET", path(name, "_mapping"))
            settings = await self.engine.request("GET", path(name, "_settings"))
        except EngineError as e:
            if e.type != "index_not_found_exception":
                raise
            return Fields(usable=False)  # no query was registered for it: percolation says so
        ((_, mapped),) = mapping.items()
        ((_, configured),) = settings.items()
        return read_mapping(mapped.get("mappings", {}), configured.get("settings", {}))
