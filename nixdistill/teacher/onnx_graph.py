"""Map the parameters of a PyTorch module exported to ONNX back to state-dict keys, by the
graph's structure rather than by initializer names.

Exporters name and fold initializers in many ways: the TorchScript exporter keeps one
initializer per set of identical tensors (named after one of its users), folds ``-logs`` or
``exp(-logs)`` into anonymous ``onnx::Exp_NNNN`` tensors and names folded weight-norm convs
``onnx::Conv_NNNN``; the dynamo exporter computes weight norm and ``exp(-logs)`` in the graph
from ``weight_g`` / ``weight_v`` / ``logs``. None of that changes *where* a tensor is used, so
every parameter is found through the node that consumes it:

1. **Module scope of each node** (:func:`node_scope`): the TorchScript exporter (torch >= 1.13)
   names nodes ``/flow/flows.6/enc/in_layers.0/Conv`` (scope ``flow.flows.6.enc.in_layers.0``);
   the dynamo exporter records the module path in the node metadata
   ``pkg.torch.onnx.name_scopes``.
2. **Constant inputs by value** (:class:`GraphConstants`): initializers, ``Constant`` outputs
   and the outputs of every node whose inputs are all constant. A constant that is not an
   initializer is evaluated with ``onnx.reference``, so a folded ``exp(-logs)``, a folded
   ``-logs`` followed by ``Exp`` and an in-graph ``Neg -> Exp`` all give the same value, and
   an in-graph weight norm gives the final conv weight.
3. **Roles**: (scope, op, input position) -> key, applied to every consuming node, so a merged
   initializer is assigned to each module that uses it (:func:`map_module_graph`).

The roles cover the layers of a VITS generator (Conv, ConvTranspose, Embedding, LayerNorm,
relative-position attention, VITS's ElementwiseAffine) and ``nn.Linear``. Only ``onnx`` and
``numpy`` are used; the VITS-specific hyperparameter inference lives in
:mod:`nixdistill.teacher.piper_onnx`.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nixdistill.errors import NixdistillError

__all__ = ["GraphConstants", "GraphError", "GraphMapping", "map_module_graph", "node_scope"]

#: Ops whose outputs differ between runs, so never constant even with constant inputs.
_RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform",
                         "RandomUniformLike", "Multinomial", "Bernoulli"})
#: Node metadata key in which the dynamo exporter records the module path of a node.
_DYNAMO_SCOPES = "pkg.torch.onnx.name_scopes"
#: Initializer names that look like a PyTorch state-dict key (``dec.ups.0.weight``), as
#: opposed to exporter names (``onnx::Conv_123``, ``/dp/flows.0/Exp_output_0``, ``sid``).
_TORCH_KEY = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$")
#: How far (nodes) to follow a relative-position embedding to the MatMul that uses it.
_REL_EMB_SEARCH_DEPTH = 12


class GraphError(NixdistillError):
    """A constant of the graph cannot be evaluated (the message names the value)."""


def node_scope(node: Any) -> str:
    """The module path of the node, as a state-dict prefix, or ``""`` when the exporter gave none.

    Args:
        node: an ``onnx.NodeProto``.
    Returns:
        ``"flow.flows.6.enc.in_layers.0"`` for the TorchScript name
        ``/flow/flows.6/enc/in_layers.0/Conv``, or the last module path of the dynamo metadata
        ``pkg.torch.onnx.name_scopes`` (``['', 'enc_p', 'enc_p.proj', 'conv1d_12']`` ->
        ``"enc_p.proj"``); ``""`` for unscoped names such as ``Conv_12`` (torch < 1.13).
    """
    for prop in node.metadata_props:
        if prop.key == _DYNAMO_SCOPES:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                break
            modules = [s for s in scopes[:-1] if isinstance(s, str) and s]  # last: the op
            return modules[-1] if modules else ""
    if node.name.startswith("/"):
        parts = [p for p in node.name.split("/") if p]
        return ".".join(parts[:-1])
    return ""


class GraphConstants:
    """Which values of a graph do not depend on its inputs, and what they are.

    Constant are the initializers, the outputs of ``Constant`` nodes and of every node whose
    inputs are all constant (one pass in topological order; random ops and nodes with
    subgraphs such as ``If``/``Loop`` never are).

    Args:
        model: an ``onnx.ModelProto`` with a topologically sorted graph (as ONNX requires).
    """

    def __init__(self, model: Any):
        graph = model.graph
        self._model = model
        self._initializers = {t.name: t for t in graph.initializer}
        self._producer = {out: node for node in graph.node for out in node.output if out}
        self._order = {id(node): i for i, node in enumerate(graph.node)}
        self._cache: dict[str, np.ndarray] = {}
        self.names: set[str] = set(self._initializers)
        for node in graph.node:
            if node.op_type in _RANDOM_OPS or any(a.g.node or a.graphs for a in node.attribute):
                continue
            if all(not i or i in self.names for i in node.input):
                self.names.update(o for o in node.output if o)

    @property
    def initializers(self) -> dict[str, Any]:
        """The graph's initializers by name (``onnx.TensorProto``)."""
        return self._initializers

    def is_const(self, name: str) -> bool:
        """Whether the value ``name`` is input-independent."""
        return bool(name) and name in self.names

    def value(self, name: str) -> np.ndarray | None:
        """The value of ``name`` (None when it is not constant).

        Raises:
            GraphError: the ancestors of a computed constant cannot be evaluated.
        """
        if not self.is_const(name):
            return None
        if name not in self._cache:
            self._cache[name] = self._compute(name)
        return self._cache[name]

    def _compute(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        if name in self._initializers:
            return numpy_helper.to_array(self._initializers[name])
        node = self._producer[name]
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            return numpy_helper.to_array(node.attribute[0].t)
        return self._evaluate(name)

    def _evaluate(self, name: str) -> np.ndarray:
        """Run the ancestor subgraph of ``name`` with ``onnx.reference``."""
        import onnx
        from onnx.reference import ReferenceEvaluator

        nodes: dict[int, Any] = {}
        initializers: dict[str, Any] = {}
        stack = [name]
        while stack:
            value = stack.pop()
            if not value or value in initializers:
                continue
            if value in self._initializers:
                initializers[value] = self._initializers[value]
                continue
            node = self._producer[value]
            if id(node) not in nodes:
                nodes[id(node)] = node
                stack.extend(node.input)
        ordered = sorted(nodes.values(), key=lambda n: self._order[id(n)])
        graph = onnx.helper.make_graph(ordered, "constant", [],
                                       [onnx.helper.make_empty_tensor_value_info(name)],
                                       initializer=list(initializers.values()))
        sub = onnx.helper.make_model(graph, opset_imports=self._model.opset_import,
                                     ir_version=self._model.ir_version)
        try:
            return np.asarray(ReferenceEvaluator(sub).run(None, {})[0])
        except Exception as e:  # the reference runtime raises many types for unsupported ops
            raise GraphError(f"cannot evaluate the constant {name!r} from its "
                             f"{len(ordered)} producing nodes ({type(e).__name__}: {e})") from None


@dataclass
class GraphMapping:
    """State-dict tensors found in a graph, and what is known about each module scope.

    Attributes:
        weights: state-dict key -> float32 array (e.g. ``dec.ups.0.weight`` [C_in, C_out, K]).
        source: state-dict key -> how it was found
            (``"ConvTranspose /dec/ups.0/ConvTranspose input 1"``).
        attrs: module key -> attributes of its Conv/ConvTranspose node (``strides``,
            ``dilations``, ``pads``, ...), for hyperparameters that no tensor shape holds.
        scopes: module key -> the op types of the nodes in that scope (for error messages).
        conflicts: keys that two nodes gave different values, with both sources.
        exporter: ``producer_name producer_version`` of the model.
    """

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    scopes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    conflicts: list[str] = field(default_factory=list)
    exporter: str = ""

    def put(self, key: str, value: np.ndarray | None, how: str) -> None:
        """Record ``value`` for ``key``; a different second value is recorded as a conflict."""
        if value is None:
            return
        value = np.asarray(value, dtype=np.float32)
        old = self.weights.get(key)
        if old is not None:
            if old.shape != value.shape or not np.allclose(old, value, rtol=1e-6, atol=1e-7):
                self.conflicts.append(f"{key}: {self.source[key]} vs {how}")
            return
        self.weights[key] = value
        self.source[key] = how

    def why_missing(self, key: str) -> str:
        """Why the state-dict ``key`` (``flow.flows.0.enc.in_layers.0.weight``) was not found."""
        return self.why_module_missing(key.rsplit(".", 1)[0])

    def why_module_missing(self, module: str) -> str:
        """Why nothing (or not the needed tensor) was found for ``module``, in words."""
        ops = sorted(set(self.scopes.get(module, [])))
        if ops:
            return (f"the graph has nodes in module {module} ({', '.join(ops)}) but none uses "
                    "a tensor in a role that gives it")
        return (f"no node of the graph carries the module scope {module} (node names or "
                f"'{_DYNAMO_SCOPES}' metadata are missing or were renamed)")


def map_module_graph(model: Any) -> GraphMapping:
    """Find the state-dict tensors of an exported PyTorch module by graph structure.

    Roles, applied to every node on the data path (a node with only constant inputs is part of
    a constant and is skipped), with ``S`` the node's scope:

    - ``Conv``/``ConvTranspose`` input 1/2 -> ``S.weight``/``S.bias`` (weight norm folded or
      evaluated); attributes -> ``attrs[S]``;
    - ``Gather`` of a 2-D float constant -> ``S.weight`` (``nn.Embedding``);
    - ``LayerNormalization`` input 1/2 -> ``S.gamma``/``S.beta``; in a scope holding a
      ``ReduceMean`` (the opset < 17 decomposition), ``Mul``/``Add`` of a 1-D float constant
      -> ``S.gamma``/``S.beta``;
    - a 3-D float constant ``[1, 2w + 1, d]`` in a scope holding a ``Softmax`` -> the relative
      position embedding ``S.emb_rel_k`` when a ``Transpose`` lies between it and the
      ``MatMul`` that uses it (keys are multiplied transposed), else ``S.emb_rel_v``;
    - ``Sub`` of a ``[C, 1]`` constant -> ``S.m``, ``Mul`` by a ``[C, 1]`` constant
      ``exp(-logs)`` -> ``S.logs = -log(value)`` (VITS ``ElementwiseAffine`` in reverse);
    - ``MatMul`` by a 2-D constant ``B [in, out]`` -> ``S.weight = B.T`` and the ``Add`` of a
      1-D constant after it -> ``S.bias``; ``Gemm`` B (``transB``) / C (``nn.Linear``);
    - fallback: an initializer whose name is a state-dict key gives that key when no role did.

    Args:
        model: an ``onnx.ModelProto``.
    Returns:
        :class:`GraphMapping`; keys no role found are simply absent (see ``why_missing``).
    Raises:
        GraphError: a constant a role needs cannot be evaluated.
    """
    from onnx import helper

    graph = model.graph
    consts = GraphConstants(model)
    mapping = GraphMapping(exporter=f"{model.producer_name} {model.producer_version}".strip())
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    scoped = [(node, node_scope(node)) for node in graph.node]
    for node, scope in scoped:
        if scope:
            mapping.scopes[scope].append(node.op_type)
    scope_ops = {s: set(ops) for s, ops in mapping.scopes.items()}

    linear_scopes: set[str] = set()
    for node, scope in scoped:
        if not scope or all(consts.is_const(o) for o in node.output if o):
            continue
        for key, value, how in _roles(node, scope, scope_ops[scope], consts, consumers):
            mapping.put(key, value, how)
        if node.op_type in ("Conv", "ConvTranspose"):
            mapping.attrs[scope] = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "MatMul" and f"{scope}.weight" in mapping.weights:
            linear_scopes.add(scope)
    for node, scope in scoped:  # nn.Linear bias: the Add after a scoped MatMul
        if scope in linear_scopes and node.op_type == "Add":
            for i, value in _const_inputs(node, consts):
                if value.ndim == 1:
                    mapping.put(f"{scope}.bias", value, f"Add {node.name} input {i}")

    for name in consts.initializers:  # state-dict-named leftovers
        if _TORCH_KEY.match(name) and name not in mapping.weights:
            mapping.put(name, consts.value(name), "initializer name")
        if name.endswith(".weight"):  # attributes of unscoped convs, through the weight's name
            for node in consumers.get(name, []):
                if node.op_type in ("Conv", "ConvTranspose") and not node_scope(node):
                    mapping.attrs.setdefault(name[: -len(".weight")], {
                        a.name: helper.get_attribute_value(a) for a in node.attribute})
    return mapping


def _const_inputs(node: Any, consts: GraphConstants) -> Iterator[tuple[int, np.ndarray]]:
    """(position, value) of each constant float input of ``node``."""
    for i, name in enumerate(node.input):
        value = consts.value(name)
        if value is not None and np.issubdtype(value.dtype, np.floating):
            yield i, value


def _roles(node: Any, scope: str, ops: set[str], consts: GraphConstants,
           consumers: dict[str, list[Any]]) -> Iterator[tuple[str, np.ndarray | None, str]]:
    """(key, value, how) for each parameter ``node`` reveals (see :func:`map_module_graph`)."""
    op = node.op_type
    where = f"{op} {node.name or '(unnamed)'}"

    def const(i: int) -> np.ndarray | None:
        return consts.value(node.input[i]) if len(node.input) > i else None

    if op in ("Conv", "ConvTranspose"):
        yield f"{scope}.weight", const(1), f"{where} input 1"
        yield f"{scope}.bias", const(2), f"{where} input 2"
        return
    if op == "LayerNormalization":
        yield f"{scope}.gamma", const(1), f"{where} input 1"
        yield f"{scope}.beta", const(2), f"{where} input 2"
        return
    if op == "Gemm":
        attrs = {a.name: a.i for a in node.attribute}
        b = const(1)
        if b is not None:
            yield f"{scope}.weight", b if attrs.get("transB", 0) else b.T, f"{where} input 1"
        yield f"{scope}.bias", const(2), f"{where} input 2"
        return
    for i, value in _const_inputs(node, consts):
        how = f"{where} input {i}"
        if op == "Gather" and i == 0 and value.ndim == 2:
            yield f"{scope}.weight", value, how
        elif op == "MatMul" and i == 1 and value.ndim == 2:
            yield f"{scope}.weight", value.T, f"{how} (transposed)"
        elif op in ("Mul", "Add") and "ReduceMean" in ops and value.ndim == 1 and value.size > 1:
            yield f"{scope}.{'gamma' if op == 'Mul' else 'beta'}", value, how
        elif (op in ("Sub", "Mul") and value.ndim == 2 and value.shape[1] == 1
              and value.shape[0] > 1 and (op == "Mul" or i == 1)):
            if op == "Sub":
                yield f"{scope}.m", value, how
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    yield f"{scope}.logs", -np.log(value), f"{how} = exp(-logs)"
        elif ("Softmax" in ops and value.ndim == 3 and value.shape[0] == 1
              and value.shape[1] > 1 and value.shape[1] % 2 == 1 and op != "MatMul"):
            is_key = _transposed_before_matmul(node, consumers)
            if is_key is not None:
                yield f"{scope}.emb_rel_{'k' if is_key else 'v'}", value, how


def _transposed_before_matmul(node: Any, consumers: dict[str, list[Any]]) -> bool | None:
    """Whether a ``Transpose`` lies between ``node`` and the first ``MatMul`` downstream of it
    (None when no MatMul is reached within ``_REL_EMB_SEARCH_DEPTH`` nodes)."""
    frontier = [(out, node.op_type == "Transpose") for out in node.output]
    seen: set[int] = set()
    for _ in range(_REL_EMB_SEARCH_DEPTH):
        following = []
        for value, transposed in frontier:
            for user in consumers.get(value, []):
                if id(user) in seen:
                    continue
                seen.add(id(user))
                if user.op_type == "MatMul":
                    return transposed
                following.extend((o, transposed or user.op_type == "Transpose")
                                 for o in user.output)
        frontier = following
    return None
