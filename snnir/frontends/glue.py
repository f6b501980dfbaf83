"""The half of the :class:`~snnir.frontends.recorder.Recorder` that records the glue between
leaf layers: the calls its ``TorchFunctionMode`` sees (``on_function``) become tags and
functional nodes (sums, differences, scales, reshapes, ``F.*`` layers, a stacked record's steps).

Invariants: each functional node is recorded once per (function, sources) key; a call that
cannot be expressed tags its result "bad", naming the function and where it was called.
"""

from __future__ import annotations

import math

from collections import Counter
from dataclasses import replace
from typing import Any

from snnir.frontends.functional import functional_op
from snnir.frontends.indexing import flatten_dims, picks_one, time_index
from snnir.frontends.tag import Tag
from snnir.ir.ops import Op, Scale

_IDENTITY_FUNCS = {"clone", "contiguous", "detach", "detach_", "to", "float", "double", "type_as", "cpu"}
_ADD_FUNCS = {"add", "__add__", "__radd__", "__iadd__"}
_SUB_FUNCS = {"sub", "__sub__", "__isub__"}
_MUL_FUNCS = {"mul", "__mul__", "__rmul__"}
_DIV_FUNCS = {"div", "__truediv__", "true_divide"}
_RESHAPE_FUNCS = {"flatten", "view", "reshape"}
_ZERO_FACTORIES = {"zeros", "zeros_like", "new_zeros"}


class GlueRecording:
    """Mixed into :class:`~snnir.frontends.recorder.Recorder`, whose state (``nodes``, ``tags``,
    ``functional``, ``owner_of``...) and helpers (``tag``, ``connect``, ``input_node``...) it uses."""

    def functional_node(self, key: tuple, base: str, op: Op, sources: tuple[str, ...]) -> tuple[str, ...]:
        if key not in self.functional:
            name = self.node_name(base)
            self.functional[key] = name
            self.nodes[name] = op
            self.connect(name, sources, (name,), name)
        return (self.functional[key],)

    def summed(self, sources: tuple[str, ...]) -> tuple[str, ...]:
        """A sum of sources with each repeated source (``y + y``) as one scaled node, edges being unique
        (a compiled module's repeated source stays repeated: it is refused at its ports)."""
        if self.whole_sequences:
            return sources
        def times(src: str, n: int) -> str:
            return self.functional_node(("scale", float(n), (src,)), "scale", Scale(scale=float(n)), (src,))[0]

        return tuple(src if n == 1 else times(src, n) for src, n in Counter(sources).items())

    def negated(self, sources: tuple[str, ...]) -> tuple[str, ...]:
        return self.functional_node(("neg", sources), "neg", Scale(scale=-1.0), sources)

    def on_function(self, func: Any, args: tuple, kwargs: dict, result: Any) -> None:
        torch = self.torch
        flat = list(args) + list(kwargs.values())
        tagged = [(a, self.tag_of(a)) for a in flat if isinstance(a, torch.Tensor) and self.tag_of(a)]
        if (not self.whole_sequences and _name(func) in _ZERO_FACTORIES and isinstance(result, torch.Tensor)
                and not bool(result.any())):
            self.tag(result, Tag("fresh"))
            return
        if (_name(func) == "unbind" and len(tagged) == 1 and tagged[0][1].kind == "sequence" and args
                and tagged[0][0] is args[0] and isinstance(result, (tuple, list))):
            self.unbound(args[0], args[1] if len(args) > 1 else kwargs.get("dim", 0), result)
            return
        tagged = [(a, self.read_if_step(a, t)) for a, t in tagged]
        if not tagged or not isinstance(result, torch.Tensor):
            if tagged and isinstance(result, (tuple, list)) and any(isinstance(r, torch.Tensor) for r in result):
                # a compiled module splits whole sequences into runs of steps: each keeps its sources
                over_time = (self.whole_sequences and _name(func) in ("split", "split_with_sizes") and len(tagged) == 1
                             and (args[2] if len(args) > 2 else kwargs.get("dim", 0)) == 0)
                for r in result:
                    if isinstance(r, torch.Tensor):
                        self.tag(r, tagged[0][1] if over_time else Tag("bad", why=f"'{_name(func)}' in '{self.where()}'"))
            if func is torch.stack and isinstance(result, torch.Tensor):
                self.stack_tag(args, kwargs, result)
            if func is torch.cat and self.whole_sequences and isinstance(result, torch.Tensor):
                self.cat_tag(args, kwargs, result)
            listed = [t for a in flat if isinstance(a, (tuple, list)) for t in a if isinstance(t, torch.Tensor)]
            if isinstance(result, torch.Tensor) and self.tag_of(result) is None and any(map(self.tag_of, listed)):
                self.tag(result, Tag("bad", why=f"'{_name(func)}' in '{self.where()}'"))  # joins traced values
            return
        name = _name(func)
        tags = [t for _, t in tagged]
        new = self.glue(name, args, kwargs, tags, result)
        self.tag(result, new or Tag("bad", why=f"'{name}' in '{self.where()}'"))

    def stack_tag(self, args: tuple, kwargs: dict, result: Any) -> None:
        """Steps of one value stacked: indexing one step (``rec[..., t]``) gives that value back."""
        tensors = args[0] if args else kwargs.get("tensors", ())
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        tags = {self.tag_of(t) for t in tensors}
        if len(tags) == 1 and None not in tags:
            self.tag(result, replace(next(iter(tags)), stacked=dim % result.ndim))

    def cat_tag(self, args: tuple, kwargs: dict, result: Any) -> None:
        """Steps joined along time: one node's values, the padded first step included."""
        tensors = args[0] if args else kwargs.get("tensors", ())
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        tags = [self.tag_of(t) for t in tensors]
        if dim != 0 or not tags or any(t is None or t.kind != "value" for t in tags):
            return
        full = {t.sources for t in tags if not t.padded}
        if len(full) == 1:
            self.tag(result, Tag("value", next(iter(full))))
        elif not full and len({t.sources for t in tags}) == 1:
            self.tag(result, tags[0])

    def divided(self, tag: Tag, divisor: Any) -> Tag | None:
        """``x / c`` as a Scale by ``1 / c``: the same rounding only where ``1 / c`` is exact, so
        a power of two; any other number is refused, saying how to write it."""
        if not isinstance(divisor, (int, float)) or isinstance(divisor, bool):
            return None
        mantissa, _ = math.frexp(divisor)
        if abs(mantissa) != 0.5:
            return Tag("bad", why=f"x / {divisor!r} (a graph scales by 1/{divisor!r}, which rounds otherwise than "
                                  f"dividing; write x * {1 / divisor!r} if that is what the model means)")
        key = ("scale", 1.0 / divisor, tag.sources)
        return Tag("value", self.functional_node(key, "scale", Scale(scale=1.0 / divisor), tag.sources))

    def unbound(self, sequence: Any, dim: int, steps: tuple) -> None:
        """Tag the steps of ``sequence.unbind(dim)`` (``for x_t in x`` makes them all at once):
        along time each is read as ``x[t]`` when used (:meth:`read_if_step`); along another
        dimension, batch-first data, each is refused as ``x[:, t]`` is."""
        dim = dim % sequence.ndim
        for k, step in enumerate(steps):
            self.tag(step, Tag("step", stacked=k) if dim == 0 else Tag(
                "bad", why=f"x.unbind({dim}) (steps taken along dimension {dim} of the input; snnir takes time "
                           f"first, [T, B, ...]: trace x.transpose(0, {dim}) and iterate over x)"))

    def read_if_step(self, tensor: Any, tag: Tag) -> Tag:
        """``tag``, or for a step of an unbound input (``Tag("step")``) what reading ``x[t]`` now gives."""
        return tag if tag.kind != "step" else self.read_step(tag.stacked, tag.stacked + 1, tuple(tensor.shape[1:]))

    def read_step(self, index: Any, steps: int, shape: tuple[int, ...]) -> Tag:
        """Reading ``x[index]`` of the input sequence (``steps`` long) now: the Input node's value
        (a sample of ``shape``), or refused where the read is out of order (:meth:`out_of_order`)."""
        out_of_order = self.out_of_order(index, steps)
        if out_of_order:
            return Tag("bad", why=out_of_order)
        self.indexed = True
        return Tag("value", self.input_node(shape, self.where()))

    def out_of_order(self, index: Any, steps: int) -> str:
        """Why reading step ``index`` of the input sequence now cannot be traced (empty if it can):
        the graph reads step t at step t, so a loop must read x[0], x[1], ... in order (each as
        often as it likes before the next)."""
        if not isinstance(index, int) or isinstance(index, bool) or not -steps <= index < steps:
            return ""
        step = index % steps
        expected = (0,) if self.last_step is None else (self.last_step, self.last_step + 1)
        if step not in expected:
            return (f"x[{index}] read after x[{self.last_step}] (snnir reads the input's steps in order, x[0], "
                    "x[1], ...: a loop over the steps backwards, or one step read at another, has no graph; "
                    "trace x.flip(0) to run backwards)" if self.last_step is not None else
                    f"x[{index}] read first (snnir reads the input's steps in order from x[0]: a loop over the "
                    "steps backwards has no graph; trace x.flip(0) to run backwards)")
        self.last_step = step
        return ""

    def glue(self, name: str, args: tuple, kwargs: dict, tags: list[Tag], result: Any) -> Tag | None:
        """The tag of ``name(*args, **kwargs)``, or ``None`` when it cannot be expressed."""
        if len(tags) == 1 and tags[0].kind == "sequence":
            if name == "__getitem__":
                later = [d for d in range(1, args[0].ndim) if len(args) == 2 and picks_one(args[1], d, args[0].ndim)]
                if later:  # batch-first data, x[:, t]
                    return Tag("bad", why=f"x[{':, ' * later[0]}t] (a step taken along dimension {later[0]} of the "
                                          "input; snnir takes time first, [T, B, ...]: trace x.transpose(0, "
                                          f"{later[0]}) and index x[t])")
                return self.read_step(args[1], args[0].shape[0], tuple(result.shape[1:]))
            # any other use of the whole input means one call is one step
            tags = [Tag("value", self.input_node(tuple(args[0].shape[1:]), self.where()))]
        if len(tags) == 1 and tags[0].stacked is not None and name == "__getitem__" and len(args) == 2:
            return replace(tags[0], stacked=None) if picks_one(args[1], tags[0].stacked, args[0].ndim) else None
        if tags == [Tag("value", ("input",))] and name == "unsqueeze" and self.reshapes_input(
                tuple(args[0].shape[1:]), tuple(result.shape[1:])):
            return tags[0]
        if name in _IDENTITY_FUNCS and tags == [Tag("fresh")] and result.shape == args[0].shape:
            return tags[0]  # a zero state detached or copied (snnTorch's utils.reset detaches what it zeroed)
        if any(t.kind != "value" for t in tags):
            bad = next(t for t in tags if t.kind != "value")
            return bad if bad.kind == "bad" else None
        if name in _IDENTITY_FUNCS and result.shape == args[0].shape:
            return tags[0]
        if self.whole_sequences and name == "__getitem__" and len(args) == 2 and time_index(args[1]):
            return tags[0]
        if name in _ADD_FUNCS and len(tags) == 2 and len(args) == 2:
            return Tag("value", self.summed(tags[0].sources + tags[1].sources), padded=tags[0].padded or tags[1].padded)
        if name in _ADD_FUNCS and len(tags) == 1 and len(args) == 2 and any(self.is_zero(a) for a in args):
            return Tag("value", tags[0].sources, padded=True)
        if name in _SUB_FUNCS and len(tags) == 2 and len(args) == 2:
            return Tag("value", self.summed(tags[0].sources + self.negated(tags[1].sources)))
        if name in ("neg", "__neg__") and len(args) == 1:
            return Tag("value", self.negated(tags[0].sources))
        if name in _MUL_FUNCS and len(tags) == 1 and len(args) == 2:
            factor = args[1] if self.tag_of(args[0]) else args[0]
            if isinstance(factor, (int, float)) and not isinstance(factor, bool):
                key = ("scale", float(factor), tags[0].sources)
                return Tag("value", self.functional_node(key, "scale", Scale(scale=float(factor)), tags[0].sources))
            return None
        if name in _DIV_FUNCS and len(tags) == 1 and len(args) == 2 and not kwargs and self.tag_of(args[0]):
            return self.divided(tags[0], args[1])
        made = functional_op(name, args, kwargs, lambda t: self.owner_of.get(id(t)), self.where())
        if made is not None and len(tags) == 1 and self.tag_of(args[0]) is not None:
            key, base, op = made
            return Tag("value", self.functional_node(key + (tags[0].sources,), base, op, tags[0].sources))
        if name in _RESHAPE_FUNCS and len(tags) == 1:
            if result.shape == args[0].shape:
                return tags[0]
            dims = flatten_dims(tuple(args[0].shape), tuple(result.shape))
            if dims is None:
                return None
            from snnir.frontends.torch_nn_map import flatten_op

            key = ("flatten", dims, tags[0].sources)
            return Tag("value", self.functional_node(key, "flatten", flatten_op(*dims, self.where()), tags[0].sources))
        return None


def _name(func: Any) -> str:
    return getattr(func, "__name__", None) or str(func)
