"""Pass infrastructure: named ``Graph -> Graph`` passes, a registry, local
rewrite rules applied to a fixed point, and a pass manager.

Invariants: a pass never mutates its input graph (graphs are immutable) and
returns a graph with the same observable behaviour under :func:`snnir.run`
(same Output values; state of surviving nodes unchanged), unless its
docstring says otherwise. Passes take options as keyword arguments; the
manager hands each pass only the options its function declares.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ties import broken_tie
from snnir.ir.verify import verify
from snnir.passes.analysis import plain_successors


class Pass:
    """A named ``Graph -> Graph`` callable; ``fn(graph, **options)``."""

    def __init__(self, name: str, fn: Callable[..., Graph], description: str = ""):
        self.name = name
        self.fn = fn
        self.description = description or (inspect.getdoc(fn) or "").split("\n")[0]
        parameters = list(inspect.signature(fn).parameters.values())[1:]  # the first is the graph
        self._takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
        self._options = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def accepts(self, option: str) -> bool:
        return self._takes_any or option in self._options

    def __call__(self, graph: Graph, **options: Any) -> Graph:
        accepted = {k: v for k, v in options.items() if self.accepts(k)}
        result = self.fn(graph, **accepted)
        if not isinstance(result, Graph):
            raise SnnirError(f"pass '{self.name}' returned {type(result).__name__}, not a Graph")
        return result

    def __repr__(self) -> str:
        return f"Pass({self.name!r})"


#: Every pass by name: built-in ones and those users add with :func:`register_pass`.
PASSES: dict[str, Pass] = {}


def register_pass(name: str | None = None, *, replace: bool = False) -> Callable[[Callable[..., Graph]], Pass]:
    """Decorator: turn ``fn(graph, *, option=...) -> Graph`` into a :class:`Pass`
    registered under ``name`` (default: the function's name)."""

    def decorate(fn: Callable[..., Graph]) -> Pass:
        made = fn if isinstance(fn, Pass) else Pass(name or fn.__name__, fn)
        if made.name in PASSES and not replace:
            raise SnnirError(f"a pass named '{made.name}' is already registered")
        PASSES[made.name] = made
        return made

    return decorate


def get_pass(spec: str | Pass | Callable[..., Graph]) -> Pass:
    """A pass from its registered name, a Pass, or a plain ``Graph -> Graph`` function."""
    if isinstance(spec, Pass):
        return spec
    if isinstance(spec, str):
        try:
            return PASSES[spec]
        except KeyError:
            raise SnnirError(f"unknown pass '{spec}' (known: {', '.join(sorted(PASSES))})") from None
    if callable(spec):
        return Pass(getattr(spec, "__name__", "custom"), spec)
    raise SnnirError(f"a pass must be a name, a Pass or a function, got {type(spec).__name__}")


# --- local rewrites -------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """Node names matched by a rule's pattern, in pattern order."""

    nodes: tuple[str, ...]


class Rule:
    """A local rewrite. ``pattern`` is a chain of op-type tuples: a match is a
    path ``n0 -> n1 -> ...`` of plain edges (no ports) whose ops have those
    types. ``check`` returns ``None`` when the rewrite applies, else the reason
    it does not; ``rewrite`` returns the new graph."""

    name = "rule"
    pattern: tuple[tuple[type, ...], ...] = ()

    def matches(self, graph: Graph) -> Iterator[Match]:
        first, rest = self.pattern[0], self.pattern[1:]
        for name, op in list(graph.nodes.items()):
            if isinstance(op, first):
                yield from self._extend(graph, (name,), rest)

    def _extend(self, graph: Graph, path: tuple[str, ...], rest: tuple) -> Iterator[Match]:
        if not rest:
            yield Match(path)
            return
        for dst in plain_successors(graph, path[-1]):
            if dst not in path and isinstance(graph.nodes[dst], rest[0]):
                yield from self._extend(graph, path + (dst,), rest[1:])

    def check(self, graph: Graph, match: Match) -> str | None:
        return None

    def rewrite(self, graph: Graph, match: Match) -> Graph:
        raise NotImplementedError

    def reason(self, graph: Graph, match: Match) -> str | None:
        """Why the rewrite does not apply (``None`` if it does): ``check``'s reason, or the
        parameter tie (``Graph.ties``) it would break by rewriting or removing one tied node only."""
        why = self.check(graph, match)
        if why is None and graph.ties and broken_tie(graph) is None:
            broken = broken_tie(self.rewrite(graph, match))
            if broken is not None:
                return f"it would break a parameter tie: node '{broken[1]}' {broken[0]}"
        return why

    def apply_all(self, graph: Graph) -> Graph | None:
        """This rule alone to a fixed point, exactly as one rewrite at a time (the first match
        in node order that applies, each time) would give it, or ``None`` where the rule
        offers no faster way than that."""
        return None

    def explain(self, graph: Graph) -> list[tuple[tuple[str, ...], str | None]]:
        """Every match with the reason it does not apply (``None`` if it does)."""
        return [(m.nodes, self.reason(graph, m)) for m in self.matches(graph)]


class RewritePass(Pass):
    """Applies ``rules`` one rewrite at a time until none applies (a fixed point); the first
    rule's :meth:`Rule.apply_all` may make many of its rewrites at once, to the same graph."""

    def __init__(self, name: str, rules: Iterable[Rule], description: str = "", max_rewrites: int = 100_000):
        self.rules = tuple(rules)
        self.max_rewrites = max_rewrites
        super().__init__(name, self._run, description or f"apply {[r.name for r in self.rules]} to a fixed point")

    def _run(self, graph: Graph) -> Graph:
        for _ in range(self.max_rewrites):
            graph = self.rules[0].apply_all(graph) or graph  # the rule tried first after every rewrite
            rewritten = self._rewrite_once(graph)
            if rewritten is None:
                return graph
            graph = rewritten
        raise SnnirError(f"pass '{self.name}' did not reach a fixed point in {self.max_rewrites} rewrites")

    def _rewrite_once(self, graph: Graph) -> Graph | None:
        for rule in self.rules:
            for match in rule.matches(graph):
                if rule.reason(graph, match) is None:
                    return rule.rewrite(graph, match)
        return None


# --- the manager ----------------------------------------------------------------
class PassManager:
    """Runs a flat, named pipeline. With ``verify_each`` the verifier runs after
    every pass and a failure names the pass; ``dump_after`` names passes after
    which ``dump(pass_name, text)`` receives the printed graph."""

    def __init__(
        self,
        passes: Iterable[str | Pass | Callable[..., Graph]],
        *,
        verify_each: bool = True,
        dump_after: Iterable[str] = (),
        dump: Callable[[str, str], None] | None = None,
        options: dict[str, Any] | None = None,
    ):
        self.passes = [get_pass(p) for p in passes]
        self.verify_each = verify_each
        self.dump_after = set(dump_after)
        unknown = self.dump_after - {p.name for p in self.passes}
        if unknown:
            raise SnnirError(f"--dump-after names passes not in the pipeline: {sorted(unknown)}")
        self.dump = dump or (lambda name, text: print(f"--- after {name} ---\n{text}"))
        self.options = dict(options or {})
        unused = [k for k in self.options if not any(p.accepts(k) for p in self.passes)]
        if unused:
            raise SnnirError(f"no pass in the pipeline {[p.name for p in self.passes]} takes the options {unused}")

    def __call__(self, graph: Graph) -> Graph:
        for pass_ in self.passes:
            try:
                graph = pass_(graph, **self.options)
            except SnnirError as exc:
                raise SnnirError(f"pass '{pass_.name}' failed: {exc.reason}", exc.node) from None
            if self.verify_each:
                try:
                    verify(graph)
                except SnnirError as exc:
                    raise SnnirError(f"graph is invalid after pass '{pass_.name}': {exc.reason}", exc.node) from None
            if pass_.name in self.dump_after:
                self.dump(pass_.name, format_graph(graph))
        return graph


def format_graph(graph: Graph) -> str:
    """The printer's text (:func:`snnir.ir.printer.format_graph`) or a plain listing."""
    try:
        from snnir.ir.printer import format_graph as printer
    except ImportError:
        lines = [repr(graph)]
        lines += [f"  {name}: {op.op_type} {op.summary()}" for name, op in graph.nodes.items()]
        lines += [f"  {src} -> {dst}" for src, dst in graph.edges]
        lines += [f"  metadata {key}: {value!r}" for key, value in graph.metadata.items() if key.startswith("snnir.")]
        return "\n".join(lines)
    return printer(graph)
