"""Compile the digit-only regular expressions of libphonenumber metadata.

Numba has no regex engine, so the patterns of ``phonenumbers`` metadata are
compiled here, once per process, into two kinds of tables the kernels run:

* DFAs over the alphabet ``0-9`` (transition table ``[state, digit]``,
  state 0 is the dead state) for yes/no questions: does the whole string match
  (``fullmatch``), or does some prefix match (``re.match`` used as a test).
  Several patterns can be compiled into one DFA whose states carry the set of
  pattern tags accepted there (a product automaton by subset construction).
* Backtracking programs for ``re.match`` where the *match itself* matters (end
  position, captured groups): national-prefix-for-parsing rules and
  international dialling prefixes. Alternatives and greedy ``?``/``{n,m}`` are
  tried in the order Python's ``re`` tries them, so the first match found is
  the one ``re.match`` returns.

The syntax accepted is exactly what the metadata uses: digits, ``[...]``
classes with ranges, ``\\d``, ``(...)``, ``(?:...)``, ``|``, ``?``, ``{n}``,
``{n,m}`` and ``$`` (programs only). Anything else raises ``ValueError``, so a
future metadata release with new syntax fails loudly at table build time
instead of matching wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALL_DIGITS = (1 << 10) - 1

# Program opcodes (kept in sync with kernels/e164.py).
OP_CLASS, OP_SPLIT, OP_JMP, OP_SAVE, OP_END, OP_MATCH = 0, 1, 2, 3, 4, 5


# --------------------------------------------------------------------------- parsing
# AST nodes are tuples: ("set", mask) ("cat", [n...]) ("alt", [n...])
# ("rep", n, lo, hi) ("group", index, n) ("end",)


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.groups = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"unsupported regex syntax ({what}) at {self.i} in {self.p!r}")

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def parse(self):
        node = self.alt()
        if self.i != len(self.p):
            raise self.fail("unbalanced parenthesis")
        return node

    def alt(self):
        branches = [self.cat()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.cat())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def cat(self):
        items = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.repeat())
        return ("cat", items)

    def repeat(self):
        node = self.atom()
        while True:
            c = self.peek()
            if c == "?":
                self.i += 1
                node = ("rep", node, 0, 1)
            elif c == "{":
                close = self.p.index("}", self.i)
                body = self.p[self.i + 1 : close]
                lo, _, hi = body.partition(",")
                if not lo.isdigit() or (hi and not hi.isdigit()) or (_ and not hi):
                    raise self.fail("repetition")
                node = ("rep", node, int(lo), int(hi) if _ else int(lo))
                self.i = close + 1
            else:
                return node

    def atom(self):
        c = self.peek()
        if c.isdigit() and c.isascii():
            self.i += 1
            return ("set", 1 << int(c))
        if c == "\\":
            if self.p[self.i : self.i + 2] != "\\d":
                raise self.fail("escape")
            self.i += 2
            return ("set", ALL_DIGITS)
        if c == "[":
            return self.char_class()
        if c == "(":
            self.i += 1
            index = None
            if self.p.startswith("?:", self.i):
                self.i += 2
            else:
                self.groups += 1
                index = self.groups
            inner = self.alt()
            if self.peek() != ")":
                raise self.fail("missing )")
            self.i += 1
            return inner if index is None else ("group", index, inner)
        if c == "$":
            self.i += 1
            return ("end",)
        raise self.fail(repr(c))

    def char_class(self):
        close = self.p.index("]", self.i)
        body = self.p[self.i + 1 : close]
        self.i = close + 1
        mask, j = 0, 0
        while j < len(body):
            if body.startswith("\\d", j):
                mask |= ALL_DIGITS
                j += 2
            elif j + 2 < len(body) and body[j + 1] == "-":
                lo, hi = int(body[j]), int(body[j + 2])
                for d in range(lo, hi + 1):
                    mask |= 1 << d
                j += 3
            elif body[j].isdigit():
                mask |= 1 << int(body[j])
                j += 1
            else:
                raise self.fail("character class")
        return ("set", mask)


def parse(pattern: str):
    """AST of ``pattern`` and its number of capturing groups."""
    parser = _Parser(pattern)
    return parser.parse(), parser.groups


# --------------------------------------------------------------------------- DFAs
@dataclass
class _Positions:
    """Glushkov positions shared by every pattern of one automaton."""

    masks: list[int] = field(default_factory=list)
    follow: list[set[int]] = field(default_factory=list)

    def new(self, mask: int) -> int:
        self.masks.append(mask)
        self.follow.append(set())
        return len(self.masks) - 1

    def build(self, node) -> tuple[bool, set[int], set[int]]:
        """(nullable, first, last) of ``node``; fills ``follow``."""
        kind = node[0]
        if kind == "set":
            p = self.new(node[1])
            return False, {p}, {p}
        if kind == "cat":
            nullable, first, last = True, set(), set()
            for child in node[1]:
                n2, f2, l2 = self.build(child)
                for p in last:
                    self.follow[p] |= f2
                first = first | f2 if nullable else first
                last = l2 | last if n2 else l2
                nullable = nullable and n2
            return nullable, first, last
        if kind == "alt":
            nullable, first, last = False, set(), set()
            for child in node[1]:
                n2, f2, l2 = self.build(child)
                nullable, first, last = nullable or n2, first | f2, last | l2
            return nullable, first, last
        if kind == "group":
            return self.build(node[2])
        if kind == "rep":
            _, child, lo, hi = node
            # x{lo,hi} = lo copies of x, then hi-lo optional copies (same language)
            parts = [child] * lo
            nullable, first, last = self.build(("cat", parts))
            for _ in range(hi - lo):
                n2, f2, l2 = self.build(child)
                for p in last:
                    self.follow[p] |= f2
                first = first | f2 if nullable else first
                last = l2 | last
                nullable = True if lo == 0 else nullable
            return nullable, first, last
        raise ValueError("'$' is not supported in a DFA pattern")


@dataclass
class DFA:
    """``trans[state, digit]``; state 0 is dead, state 1 the start.
    ``accepts[state]`` is the frozenset of tags accepted in that state."""

    trans: np.ndarray
    accepts: list[frozenset]


def build_dfa(patterns: list[tuple[str, object, bool]], max_states: int = 200_000) -> DFA:
    """One DFA for several ``(pattern, tag, prefix)`` entries.

    ``prefix=False``: the tag is accepted where the input read so far fully
    matches the pattern. ``prefix=True``: accepted from the point where some
    prefix of the input matched (``re.match`` as a test) and forever after.
    """
    pos = _Positions()
    starts: set[int] = set()
    tag_last: list[tuple[object, set[int]]] = []
    start_tags = set()
    for pattern, tag, prefix in patterns:
        ast, _ = parse(pattern)
        nullable, first, last = pos.build(ast)
        if prefix:
            latch = pos.new(ALL_DIGITS)
            pos.follow[latch].add(latch)
            for p in last:
                pos.follow[p].add(latch)
            last = set(last) | {latch}
            if nullable:
                first = set(first) | {latch}
        starts |= first
        tag_last.append((tag, set(last)))
        if nullable:
            start_tags.add(tag)

    masks = pos.masks
    follow = [frozenset(f) for f in pos.follow]
    owner: dict[int, list] = {}
    for tag, last in tag_last:
        for p in last:
            owner.setdefault(p, []).append(tag)

    start = ("start",)
    index: dict = {frozenset(): 0, start: 1}
    order: list = [frozenset(), start]
    rows: list[list[int]] = []
    accepts: list[frozenset] = []
    i = 0
    while i < len(order):
        state = order[i]
        i += 1
        if state is start:
            tags = set(start_tags)
            candidates = starts
        else:
            tags = {t for p in state for t in owner.get(p, ())}
            candidates = set().union(*(follow[p] for p in state)) if state else set()
        accepts.append(frozenset(tags))
        row = []
        for d in range(10):
            bit = 1 << d
            nxt = frozenset(q for q in candidates if masks[q] & bit)
            j = index.get(nxt)
            if j is None:
                j = index[nxt] = len(order)
                order.append(nxt)
                if len(order) > max_states:
                    raise ValueError("automaton too large")
            row.append(j)
        rows.append(row)
    return DFA(np.asarray(rows, dtype=np.int32).reshape(-1, 10), accepts)


# --------------------------------------------------------------------------- programs
def compile_program(pattern: str) -> tuple[list[list[int]], int]:
    """Backtracking program (rows ``[op, a, b]``, absolute jump targets
    relative to the program start) and the number of capturing groups."""
    ast, groups = parse(pattern)
    prog: list[list[int]] = []

    def emit(op: int, a: int = 0, b: int = 0) -> int:
        prog.append([op, a, b])
        return len(prog) - 1

    def gen(node) -> None:
        kind = node[0]
        if kind == "set":
            emit(OP_CLASS, node[1])
        elif kind == "cat":
            for child in node[1]:
                gen(child)
        elif kind == "alt":
            jumps = []
            branches = node[1]
            for k, child in enumerate(branches):
                if k < len(branches) - 1:
                    split = emit(OP_SPLIT)
                    prog[split][1] = len(prog)
                    gen(child)
                    jumps.append(emit(OP_JMP))
                    prog[split][2] = len(prog)
                else:
                    gen(child)
            for j in jumps:
                prog[j][1] = len(prog)
        elif kind == "group":
            emit(OP_SAVE, 2 * node[1])
            gen(node[2])
            emit(OP_SAVE, 2 * node[1] + 1)
        elif kind == "rep":
            _, child, lo, hi = node
            for _ in range(lo):
                gen(child)
            # greedy x{0,k} as nested (x(x(...)?)?)? — the order re tries counts
            splits = []
            for _ in range(hi - lo):
                split = emit(OP_SPLIT)
                prog[split][1] = len(prog)
                splits.append(split)
                gen(child)
            for split in splits:
                prog[split][2] = len(prog)
        elif kind == "end":
            emit(OP_END)
        else:  # pragma: no cover - parse() produces only the kinds above
            raise ValueError(kind)

    gen(ast)
    emit(OP_MATCH)
    return prog, groups


def parse_template(rule: str) -> list[int]:
    """``re.sub`` replacement like ``"246\\1"`` as codes: 0-9 literal digit,
    ``10 + g`` group ``g``."""
    out: list[int] = []
    i = 0
    while i < len(rule):
        c = rule[i]
        if c == "\\" and i + 1 < len(rule) and rule[i + 1].isdigit():
            out.append(10 + int(rule[i + 1]))
            i += 2
        elif c.isdigit() and c.isascii():
            out.append(int(c))
            i += 1
        else:
            raise ValueError(f"unsupported transform rule {rule!r}")
    return out
