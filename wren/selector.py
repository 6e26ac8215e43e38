"""Calico's label selector language, parsed to a small immutable AST.

Grammar (lowest binding first), as in libcalico-go's selector parser:

    or      := and ( "||" and )*
    and     := unary ( "&&" unary )*
    unary   := "!"* operand
    operand := "all()" | "global()" | "has(" label ")" | "(" or ")"
             | label ( "==" | "!=" | "contains" | "starts with" | "ends with" ) string
             | label ( "in" | "not in" ) "{" [ string ( "," string )* ] "}"
    string  := '...' | "..."          (no escapes: a string cannot hold its own quote)
    label   := [A-Za-z0-9_./-]+

An empty selector means `all()`. Calico's semantics for missing labels are kept: `k != "v"` and
`k not in {...}` match when `k` is absent; every other comparison needs the label present.

`str(selector)` is canonical: one form per AST, and it parses back to an equal AST, so it can be
stored, compared and shown in errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "All",
    "And",
    "Contains",
    "EndsWith",
    "Eq",
    "Global",
    "Has",
    "In",
    "Ne",
    "Not",
    "NotIn",
    "Or",
    "Selector",
    "SelectorError",
    "StartsWith",
    "parse_selector",
    "valid_label_key",
]

MAX_LABEL_LENGTH = 512
# Deep enough for any selector a person writes; shallow enough that nesting never hits Python's
# recursion limit, so garbage input gets a SelectorError instead of RecursionError.
MAX_DEPTH = 200
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_SPACE = " \t\r\n"


class SelectorError(ValueError):
    """A selector that does not parse; `column` is 1-based and points at the problem."""

    def __init__(self, text: str, column: int, reason: str) -> None:
        self.text = text
        self.column = column
        self.reason = reason
        pointer = " " * (column - 1) + "^"
        super().__init__(f"invalid selector at column {column}: {reason}\n  {text}\n  {pointer}")


def valid_label_key(key: str) -> bool:
    return 0 < len(key) <= MAX_LABEL_LENGTH and all(c in _LABEL_CHARS for c in key)


def _quote(value: str) -> str:
    return f"'{value}'" if '"' in value else f'"{value}"'


# -- AST -----------------------------------------------------------------------------------------
class Selector(ABC):
    """Base of every AST node."""

    __slots__ = ()

    @abstractmethod
    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a set of labels (a node's, a pod's) is selected."""

    def _prec(self) -> int:
        """Binding strength for printing: or 1, and 2, everything else 3."""
        return 3


@dataclass(frozen=True, slots=True)
class All(Selector):
    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Global(Selector):
    """`global()`: in namespaceSelector it means "not namespaced"; on labels it matches all."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class Has(Selector):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True, slots=True)
class Eq(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{self.key} == {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Ne(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) != self.value

    def __str__(self) -> str:
        return f"{self.key} != {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Contains(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.key)
        return got is not None and self.value in got

    def __str__(self) -> str:
        return f"{self.key} contains {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class StartsWith(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.key)
        return got is not None and got.startswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} starts with {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class EndsWith(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.key)
        return got is not None and got.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} ends with {_quote(self.value)}"


def _set_literal(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(_quote(v) for v in values) + "}"


@dataclass(frozen=True, slots=True)
class In(Selector):
    """`k in {...}`; `values` is sorted and de-duplicated so equal sets compare equal."""

    key: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.key)
        return got is not None and got in self.values

    def __str__(self) -> str:
        return f"{self.key} in {_set_literal(self.values)}"


@dataclass(frozen=True, slots=True)
class NotIn(Selector):
    key: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.key)
        return got is None or got not in self.values

    def __str__(self) -> str:
        return f"{self.key} not in {_set_literal(self.values)}"


@dataclass(frozen=True, slots=True)
class Not(Selector):
    operand: Selector

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        inner = str(self.operand)
        return f"!({inner})" if self.operand._prec() < 3 else f"!{inner}"


@dataclass(frozen=True, slots=True)
class And(Selector):
    operands: tuple[Selector, ...]

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ValueError("And needs at least two operands")

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(o.matches(labels) for o in self.operands)

    def _prec(self) -> int:
        return 2

    def __str__(self) -> str:
        # An operand that is itself an and/or keeps its parentheses, so the tree shape survives.
        return " && ".join(f"({o})" if o._prec() < 3 else str(o) for o in self.operands)


@dataclass(frozen=True, slots=True)
class Or(Selector):
    operands: tuple[Selector, ...]

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ValueError("Or needs at least two operands")

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(o.matches(labels) for o in self.operands)

    def _prec(self) -> int:
        return 1

    def __str__(self) -> str:
        return " || ".join(f"({o})" if o._prec() < 3 else str(o) for o in self.operands)


_COMPARISONS: dict[str, type[Eq | Ne | Contains | StartsWith | EndsWith]] = {
    "==": Eq, "!=": Ne, "contains": Contains, "starts with": StartsWith, "ends with": EndsWith,
}


# -- tokenizer -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "label" "string" "(" ")" "{" "}" "," "==" "!=" "!" "&&" "||" "in" "not in"
    #            "contains" "starts with" "ends with" "all" "global" "has" "eof"
    value: str
    col: int  # 1-based column of the token's first character


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)

    def fail(at: int, reason: str) -> SelectorError:
        return SelectorError(text, at + 1, reason)

    def skip_space(j: int) -> int:
        while j < n and text[j] in _SPACE:
            j += 1
        return j

    def read_label(j: int) -> tuple[str, int]:
        start = j
        while j < n and text[j] in _LABEL_CHARS:
            j += 1
        if j == start:
            what = repr(text[j]) if j < n else "end of selector"
            raise fail(j, f"expected a label name, found {what}")
        if j - start > MAX_LABEL_LENGTH:
            raise fail(start, f"label name longer than {MAX_LABEL_LENGTH} characters")
        return text[start:j], j

    def word_at(j: int, word: str) -> int | None:
        """End of `word` at j if it stands alone (not the start of a longer label)."""
        if text.startswith(word, j) and (j + len(word) >= n or text[j + len(word)] not in
                                         _LABEL_CHARS):
            return j + len(word)
        return None

    def words_at(j: int, *words: str) -> int | None:
        """A multi-word operator; as in Calico, spaces between its words are optional
        (`starts with` and `startswith` both work) but it must end at a word boundary."""
        for word in words[:-1]:
            if not text.startswith(word, j):
                return None
            j = skip_space(j + len(word))
        return word_at(j, words[-1])

    while True:
        i = skip_space(i)
        if i >= n:
            toks.append(_Tok("eof", "", n + 1))
            return toks
        c = text[i]
        if c in "(){},":
            toks.append(_Tok(c, c, i + 1))
            i += 1
        elif c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                raise fail(i, f"unterminated string (no closing {c})")
            toks.append(_Tok("string", text[i + 1 : end], i + 1))
            i = end + 1
        elif c == "=":
            if not text.startswith("==", i):
                raise fail(i, "expected ==")
            toks.append(_Tok("==", "==", i + 1))
            i += 2
        elif c == "!":
            if text.startswith("!=", i):
                toks.append(_Tok("!=", "!=", i + 1))
                i += 2
            else:
                toks.append(_Tok("!", "!", i + 1))
                i += 1
        elif c in "&|":
            if not text.startswith(c * 2, i):
                raise fail(i, f"expected {c * 2}")
            toks.append(_Tok(c * 2, c * 2, i + 1))
            i += 2
        elif toks and toks[-1].kind == "label":
            for kind, words in (
                ("contains", ("contains",)),
                ("starts with", ("starts", "with")),
                ("ends with", ("ends", "with")),
                ("not in", ("not", "in")),
                ("in", ("in",)),
            ):
                op_end = words_at(i, *words)
                if op_end is not None:
                    toks.append(_Tok(kind, kind, i + 1))
                    i = op_end
                    break
            else:
                raise fail(i, f"expected an operator after label {toks[-1].value!r} "
                              "(==, !=, in, not in, contains, starts with, ends with)")
        elif text.startswith("has(", i):
            j = skip_space(i + 4)
            label, j = read_label(j)
            j = skip_space(j)
            if j >= n or text[j] != ")":
                raise fail(j, "expected ) to close has(")
            toks.append(_Tok("has", label, i + 1))
            i = j + 1
        elif text.startswith("all(", i) or text.startswith("global(", i):
            kind = "all" if text[i] == "a" else "global"
            j = skip_space(i + len(kind) + 1)
            if j >= n or text[j] != ")":
                raise fail(j, f"expected ) after {kind}(")
            toks.append(_Tok(kind, kind, i + 1))
            i = j + 1
        elif c in _LABEL_CHARS:
            label, j = read_label(i)
            toks.append(_Tok("label", label, i + 1))
            i = j
        else:
            raise fail(i, f"unexpected character {c!r}")


# -- parser --------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def fail(self, tok: _Tok, reason: str) -> SelectorError:
        return SelectorError(self.text, tok.col, reason)

    def found(self, tok: _Tok) -> str:
        if tok.kind == "eof":
            return "end of selector"
        if tok.kind == "string":
            return f"string {_quote(tok.value)}"
        if tok.kind == "label":
            return f"label {tok.value!r}"
        return repr(tok.kind)

    def parse(self) -> Selector:
        if self.peek().kind == "eof":
            return All()
        sel = self.parse_or()
        tok = self.peek()
        if tok.kind != "eof":
            raise self.fail(tok, f"unexpected {self.found(tok)} after a complete expression")
        return sel

    def parse_or(self) -> Selector:
        operands = [self.parse_and()]
        while self.peek().kind == "||":
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Selector:
        operands = [self.parse_unary()]
        while self.peek().kind == "&&":
            self.take()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Selector:
        nots = 0
        while self.peek().kind == "!":
            self.take()
            nots += 1
            if nots > MAX_DEPTH:
                raise self.fail(self.peek(), f"more than {MAX_DEPTH} negations in a row")
        sel = self.parse_operand()
        for _ in range(nots):
            sel = Not(sel)
        return sel

    def parse_operand(self) -> Selector:
        tok = self.take()
        if tok.kind == "all":
            return All()
        if tok.kind == "global":
            return Global()
        if tok.kind == "has":
            return Has(tok.value)
        if tok.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(tok, f"parentheses nested deeper than {MAX_DEPTH}")
            inner = self.parse_or()
            close = self.take()
            if close.kind != ")":
                raise self.fail(close, f"expected ) to close the ( at column {tok.col}, "
                                       f"found {self.found(close)}")
            self.depth -= 1
            return inner
        if tok.kind != "label":
            raise self.fail(tok, f"expected a label, has(), all() or (, found {self.found(tok)}")
        op = self.take()
        if op.kind in ("==", "!=", "contains", "starts with", "ends with"):
            value = self.take()
            if value.kind != "string":
                raise self.fail(value, f"expected a quoted string after {op.kind}, "
                                       f"found {self.found(value)}")
            return _COMPARISONS[op.kind](tok.value, value.value)
        if op.kind in ("in", "not in"):
            values = self.parse_set(op)
            return In(tok.value, values) if op.kind == "in" else NotIn(tok.value, values)
        raise self.fail(op, f"expected an operator after label {tok.value!r}, "
                            f"found {self.found(op)}")

    def parse_set(self, op: _Tok) -> tuple[str, ...]:
        brace = self.take()
        if brace.kind != "{":
            raise self.fail(brace, f"expected {{ after {op.kind}, found {self.found(brace)}")
        values: list[str] = []
        if self.peek().kind == "}":
            self.take()
            return ()
        while True:
            value = self.take()
            if value.kind != "string":
                raise self.fail(value, f"expected a quoted string in the set, "
                                       f"found {self.found(value)}")
            values.append(value.value)
            sep = self.take()
            if sep.kind == "}":
                return tuple(values)
            if sep.kind != ",":
                raise self.fail(sep, f"expected , or }} in the set, found {self.found(sep)}")


def parse_selector(text: str) -> Selector:
    """Parse a Calico selector; empty or blank text is `all()`. Raises SelectorError."""
    return _Parser(text).parse()
