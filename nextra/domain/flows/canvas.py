"""The flow canvas: the editor's picture of an organism document, and the way back."""

from __future__ import annotations

import copy
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, NoReturn, cast, get_args

import msgspec
import yaml

from nextra.kernel.errors import ValidationError

__all__ = (
    "CANVAS_VERSION",
    "COLUMN_WIDTH",
    "DEFAULT_HANDLERS",
    "NODE_TYPES",
    "ROW_HEIGHT",
    "TRIGGER_ID",
    "Canvas",
    "CanvasEdge",
    "CanvasError",
    "CanvasNode",
    "EdgeKind",
    "NodeType",
    "Position",
    "Viewport",
    "canvas_to_yaml_document",
    "node_type_for_handler",
    "render_yaml",
    "same_meaning",
    "yaml_document_to_canvas",
)

NodeType = Literal[
    "trigger",
    "llm_call",
    "http_request",
    "code_block",
    "conditional",
    "output",
    "loop",
    "listener",
]
EdgeKind = Literal["entry", "peer"]

NODE_TYPES: Final[tuple[NodeType, ...]] = get_args(NodeType)
EDGE_KINDS: Final[tuple[EdgeKind, ...]] = get_args(EdgeKind)

CANVAS_VERSION: Final = 1
TRIGGER_ID: Final = "trigger"
COLUMN_WIDTH: Final = 280.0
ROW_HEIGHT: Final = 140.0

# Integers a JavaScript editor carries without rounding (Number.MAX_SAFE_INTEGER).
_MAX_SAFE_INTEGER: Final = 2**53 - 1

_BUILTIN_NODE_TYPES: Final[Mapping[str, NodeType]] = {
    "llm": "llm_call",
    "http": "http_request",
    "transform": "code_block",
    "branch": "conditional",
    "output": "output",
    "loop": "loop",
}

DEFAULT_HANDLERS: Final[Mapping[NodeType, str]] = {
    "llm_call": "builtin:llm",
    "http_request": "builtin:http",
    "code_block": "builtin:transform",
    "conditional": "builtin:branch",
    "output": "builtin:output",
    "loop": "builtin:loop",
}

# Listener keys the canvas holds outside a node's data.
_STRUCTURAL_KEYS: Final = ("name", "peers")

_TOP_LEVEL_ORDER: Final = (
    "organism",
    "entry",
    "payloads",
    "llm",
    "thread_scheduling",
    "max_concurrent_pipelines",
    "max_concurrent_handlers",
    "max_concurrent_per_agent",
)
_ORGANISM_ORDER: Final = ("name", "description", "version")
_LISTENER_ORDER: Final = (
    "name",
    "description",
    "handler",
    "payload_class",
    "agent",
    "peers",
    "prompt",
)
_DATA_ORDER: Final = tuple(k for k in _LISTENER_ORDER if k not in _STRUCTURAL_KEYS)


class CanvasError(ValidationError):
    """A document the canvas cannot show, or a canvas that is no organism document."""

    code = "canvas"


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """Where a node sits on the canvas, in canvas units (React Flow's position)."""

    x: float = 0.0
    y: float = 0.0


class Viewport(msgspec.Struct, frozen=True, kw_only=True):
    """The editor's pan and zoom."""

    x: float = 0.0
    y: float = 0.0
    zoom: float = 1.0


class CanvasNode(msgspec.Struct, frozen=True, kw_only=True):
    """One box on the canvas: the trigger, or one listener of the document.

    Attributes:
        id: The listener's name; for the trigger, ``"trigger"``.
        type: How the editor draws it, derived from the listener's handler.
        position: Canvas-only; kept across YAML edits.
        data: The listener's fields except ``name`` (the id) and ``peers`` (the
            edges), as plain JSON values. Empty for the trigger.
        ui: Canvas-only, free-form: size, colour, collapsed flag, ...
    """

    id: str
    type: NodeType
    position: Position = msgspec.field(default_factory=Position)
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    ui: dict[str, Any] = msgspec.field(default_factory=dict)


class CanvasEdge(msgspec.Struct, frozen=True, kw_only=True):
    """One arrow: the trigger to the entry listener, or a listener to a peer.

    Attributes:
        id: Stable: ``entry:<target>`` or ``peer:<source>-><target>``, with ``#n``
            added to repeats.
        source: The id of the node the arrow leaves.
        target: The id of the node it reaches; a name no node has when the
            document names an unknown listener (the editor shows it dangling).
        kind: ``entry`` or ``peer``.
        ui: Canvas-only, free-form: label position, colour, ...
    """

    id: str
    source: str
    target: str
    kind: EdgeKind
    ui: dict[str, Any] = msgspec.field(default_factory=dict)


class Canvas(msgspec.Struct, frozen=True, kw_only=True):
    """What the flow editor saves: nodes, edges and the view, all JSON.

    Attributes:
        version: The shape of this Struct, for later migrations.
        nodes: The trigger first, then one node per listener in document order.
        edges: The entry edge first, then peer edges in document order.
        viewport: Canvas-only pan and zoom.
        ui: Canvas-only, free-form editor state (grid, minimap, ...).
    """

    version: int = CANVAS_VERSION
    nodes: tuple[CanvasNode, ...] = ()
    edges: tuple[CanvasEdge, ...] = ()
    viewport: Viewport = msgspec.field(default_factory=Viewport)
    ui: dict[str, Any] = msgspec.field(default_factory=dict)


def node_type_for_handler(handler: object) -> NodeType:
    """The node type the editor draws for a listener's handler.

    Args:
        handler: The listener's ``handler`` value, whatever the document holds.

    Returns:
        ``llm_call``, ``http_request``, ``code_block``, ``conditional``, ``output``
        or ``loop`` for ``builtin:<kind>``; ``code_block`` for ``wasm:<module>``;
        ``listener`` for anything else (a trusted Python path, a kind not in
        the catalogue, a missing handler).
    """
    if isinstance(handler, str):
        prefix, colon, rest = handler.partition(":")
        if colon and prefix == "builtin" and rest in _BUILTIN_NODE_TYPES:
            return _BUILTIN_NODE_TYPES[rest]
        if colon and prefix == "wasm" and rest:
            return "code_block"
    return "listener"


# --------------------------------------------------------------------------
# Document to canvas


class _Listener(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    data: dict[str, Any]
    peers: tuple[str, ...]


def yaml_document_to_canvas(
    document: Mapping[str, Any], previous: Canvas | None = None
) -> Canvas:
    """Draw an organism document as a canvas.

    One node per listener (id = name) plus the trigger node, an entry edge to the
    entry listener and one peer edge per declared peer. Positions, ``ui`` and the
    viewport come from ``previous``: a node's by id (the trigger's by type), an
    edge's by what it joins (kind, source, target, and which repeat), so an edge
    the editor named itself keeps its ``ui``. Nodes ``previous`` lacks are laid
    out in columns by their distance from the entry.
    The result depends only on the arguments.

    Args:
        document: The parsed ``organism.yaml`` (as ``yaml.safe_load`` returns it).
        previous: The canvas saved before this edit, if any.

    Returns:
        The canvas.

    Raises:
        CanvasError: The document cannot be drawn: listeners that are no list
            of maps, a listener without a name or with a taken one, peers or
            ``entry`` of the wrong type, or a value JSON cannot carry.
    """
    if not isinstance(document, Mapping):
        _fail(
            "an organism document is a map",
            where="$",
            expected="map",
            got=type(document).__name__,
        )
    listeners = _read_listeners(document)
    names = [listener.name for listener in listeners]
    entry = _read_entry(document, names)
    trigger_id = _trigger_id(names)

    prev_nodes: dict[str, CanvasNode] = {}
    prev_trigger: CanvasNode | None = None
    prev_edges: dict[tuple[str, str, str, int], CanvasEdge] = {}
    if previous is not None:
        for node in previous.nodes:
            if node.type == "trigger":
                prev_trigger = prev_trigger or node
            else:
                prev_nodes.setdefault(node.id, node)
        prev_keys = _EdgeKeys()
        for edge in previous.edges:
            key = prev_keys.next(edge.kind, edge.source, edge.target)
            prev_edges.setdefault(key, edge)

    kept: dict[str, CanvasNode] = {
        name: prev_nodes[name] for name in names if name in prev_nodes
    }
    if prev_trigger is not None:
        kept[trigger_id] = prev_trigger
    placed = _layout(trigger_id, listeners, entry, kept)

    def ui_of(node: CanvasNode | None) -> dict[str, Any]:
        return copy.deepcopy(node.ui) if node is not None else {}

    nodes = [
        CanvasNode(
            id=trigger_id,
            type="trigger",
            position=placed[trigger_id],
            ui=ui_of(prev_trigger),
        )
    ]
    nodes.extend(
        CanvasNode(
            id=listener.name,
            type=node_type_for_handler(listener.data.get("handler")),
            position=placed[listener.name],
            data=listener.data,
            ui=ui_of(prev_nodes.get(listener.name)),
        )
        for listener in listeners
    )

    wanted: list[tuple[str, str, str, EdgeKind]] = []
    if entry is not None:
        wanted.append((f"entry:{entry}", trigger_id, entry, "entry"))
    wanted.extend(
        (f"peer:{listener.name}->{peer}", listener.name, peer, "peer")
        for listener in listeners
        for peer in listener.peers
    )
    edges: list[CanvasEdge] = []
    used: set[str] = set()
    keys = _EdgeKeys()
    for base, source, target, kind in wanted:
        edge_id, count = base, 1
        while edge_id in used:
            count += 1
            edge_id = f"{base}#{count}"
        used.add(edge_id)
        old = prev_edges.get(keys.next(kind, source, target))
        edges.append(
            CanvasEdge(
                id=edge_id,
                source=source,
                target=target,
                kind=kind,
                ui=copy.deepcopy(old.ui) if old is not None else {},
            )
        )

    return Canvas(
        nodes=tuple(nodes),
        edges=tuple(edges),
        viewport=previous.viewport if previous is not None else Viewport(),
        ui=copy.deepcopy(previous.ui) if previous is not None else {},
    )


class _EdgeKeys:
    """Names edges by what they join, so ``ui`` survives a change of edge id.

    The n-th peer edge from a to b is ``("peer", a, b, n)``; the n-th entry edge
    to a is ``("entry", "", a, n)`` whatever the trigger's id.
    """

    def __init__(self) -> None:
        self._seen: Counter[tuple[str, str, str]] = Counter()

    def next(self, kind: str, source: str, target: str) -> tuple[str, str, str, int]:
        base = (kind, "" if kind == "entry" else source, target)
        self._seen[base] += 1
        return (*base, self._seen[base])


def _read_listeners(document: Mapping[str, Any]) -> list[_Listener]:
    raw = document.get("listeners")
    if raw is None:
        return []
    if not isinstance(raw, list):
        _fail(
            "listeners must be a list of maps to be drawn (the split form "
            "{directory, include} is not supported)",
            where="listeners",
            expected="list",
            got=type(raw).__name__,
        )
    listeners: list[_Listener] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"listeners[{index}]"
        if not isinstance(item, Mapping):
            _fail(
                "a listener is a map",
                where=where,
                expected="map",
                got=type(item).__name__,
            )
        name = item.get("name")
        if not isinstance(name, str) or not name:
            _fail(
                "a listener needs a name to be drawn",
                where=f"{where}.name",
                expected="non-empty string",
                got=repr(name),
            )
        if name in seen:
            _fail(
                f"listener name {name!r} is used twice; the canvas needs unique "
                "names (edit this flow as YAML)",
                where=f"{where}.name",
                got=name,
            )
        seen.add(name)
        data: dict[str, Any] = {}
        for key, value in item.items():
            if not isinstance(key, str):
                _fail(
                    "listener keys must be strings",
                    where=where,
                    expected="string",
                    got=repr(key),
                )
            if key not in _STRUCTURAL_KEYS:
                data[key] = _json_value(value, f"{where}.{key}")
        listeners.append(
            _Listener(
                name=name,
                data=_ordered_map(data, _DATA_ORDER, rest_sorted=True),
                peers=_read_peers(item.get("peers"), f"{where}.peers"),
            )
        )
    return listeners


def _read_peers(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        _fail(
            "peers must be a list of listener names",
            where=where,
            expected="list",
            got=type(raw).__name__,
        )
    for index, peer in enumerate(raw):
        if not isinstance(peer, str):
            _fail(
                "a peer is a listener name",
                where=f"{where}[{index}]",
                expected="string",
                got=repr(peer),
            )
    return tuple(raw)


def _read_entry(document: Mapping[str, Any], names: Sequence[str]) -> str | None:
    raw = document.get("entry")
    if raw is None:
        return names[0] if names else None
    if not isinstance(raw, str):
        _fail(
            "entry names a listener",
            where="entry",
            expected="string",
            got=repr(raw),
        )
    return raw


def _trigger_id(names: Iterable[str]) -> str:
    taken = set(names)
    candidate, count = TRIGGER_ID, 0
    while candidate in taken:
        count += 1
        candidate = f"{TRIGGER_ID}~{count}"
    return candidate


def _layout(
    trigger_id: str,
    listeners: Sequence[_Listener],
    entry: str | None,
    kept: Mapping[str, CanvasNode],
) -> dict[str, Position]:
    """Positions: kept nodes stay; new ones go in columns by distance from entry.

    The trigger is column 0, the entry listener column 1, and a listener first
    reached over n peer edges column n + 1; unreachable listeners share the
    column after the last. A new node goes below every kept node whose x falls
    in its column, new nodes of a column stacked in document order.
    """
    names = [listener.name for listener in listeners]
    known = set(names)
    peers = {
        listener.name: [peer for peer in listener.peers if peer in known]
        for listener in listeners
    }
    depth: dict[str, int] = {}
    if entry is not None and entry in known:
        depth[entry] = 1
        queue = deque([entry])
        while queue:
            current = queue.popleft()
            for peer in peers[current]:
                if peer not in depth:
                    depth[peer] = depth[current] + 1
                    queue.append(peer)
    unreachable = max(depth.values(), default=0) + 1
    column = {name: depth.get(name, unreachable) for name in names}
    column[trigger_id] = 0

    placed = {node_id: kept[node_id].position for node_id in kept}
    next_y: dict[int, float] = {}
    for node_id in [trigger_id, *names]:
        if node_id in placed:
            continue
        col = column[node_id]
        x = col * COLUMN_WIDTH
        if col not in next_y:
            band = [
                position.y
                for position in placed.values()
                if abs(position.x - x) < COLUMN_WIDTH / 2
            ]
            next_y[col] = max(band) + ROW_HEIGHT if band else 0.0
        placed[node_id] = Position(x=x, y=next_y[col])
        next_y[col] += ROW_HEIGHT
    return placed


# --------------------------------------------------------------------------
# Canvas to document


def canvas_to_yaml_document(
    canvas: Canvas, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Turn a canvas back into an organism document.

    Listeners come from the listener nodes (name = id, fields = data, peers =
    peer edges), ``entry`` from the entry edge. Everything else (``organism``,
    ``payloads``, ``llm``, concurrency and unknown keys) is kept from
    ``previous``, as are its listener order, its peer order and the spelling of
    anything the canvas did not change (an absent ``peers`` or ``entry``, the
    key order of nested maps). New listeners and peers follow in canvas order.

    Args:
        canvas: The canvas the editor saved.
        previous: The document the canvas was drawn from, if any.

    Returns:
        A new document; nothing in it is shared with the arguments.

    Raises:
        CanvasError: The canvas is no organism: duplicate or empty node ids, an
            unknown node type, more than one trigger or entry edge, an edge that
            leaves the wrong kind of node, ``name``/``peers`` in node data, or a
            value JSON cannot carry.
    """
    prev: Mapping[str, Any] = previous if previous is not None else {}
    nodes = _check_nodes(canvas.nodes)
    listener_nodes = {node.id: node for node in nodes if node.type != "trigger"}
    trigger_ids = {node.id for node in nodes if node.type == "trigger"}
    entry_target, peer_targets = _check_edges(canvas.edges, trigger_ids, listener_nodes)

    prev_listeners: dict[str, Mapping[str, Any]] = {}
    raw_listeners = prev.get("listeners")
    if isinstance(raw_listeners, list):
        for item in raw_listeners:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                prev_listeners.setdefault(item["name"], item)
    order = [name for name in prev_listeners if name in listener_nodes]
    order.extend(name for name in listener_nodes if name not in prev_listeners)
    listeners = [
        _listener_document(
            listener_nodes[name],
            peer_targets.get(name, []),
            prev_listeners.get(name),
        )
        for name in order
    ]

    # Previous keys keep their places; entry and listeners are settled below
    # (an absent or null listeners key stays so while there are no listeners).
    out: dict[str, Any] = {
        key: None if key in ("entry", "listeners") else copy.deepcopy(value)
        for key, value in prev.items()
    }
    if listeners or prev.get("listeners") is not None:
        out["listeners"] = listeners
    entry_set, entry_value = _entry_document(entry_target, order, prev)
    if entry_set:
        out["entry"] = entry_value
    else:
        out.pop("entry", None)
    return out


def _check_nodes(nodes: Sequence[CanvasNode]) -> list[CanvasNode]:
    seen: set[str] = set()
    triggers = 0
    for index, node in enumerate(nodes):
        where = f"nodes[{index}]"
        if not node.id:
            _fail("a node needs an id", where=f"{where}.id")
        if node.id in seen:
            _fail(
                f"node id {node.id!r} is used twice",
                where=f"{where}.id",
                got=node.id,
            )
        seen.add(node.id)
        if node.type not in NODE_TYPES:
            _fail(
                f"unknown node type {node.type!r}",
                where=f"{where}.type",
                expected=list(NODE_TYPES),
                got=node.type,
            )
        if node.type == "trigger":
            triggers += 1
            if triggers > 1:
                _fail("a canvas has at most one trigger node", where=where)
            continue
        for key in _STRUCTURAL_KEYS:
            if key in node.data:
                _fail(
                    f"node data must not hold {key!r}: the node id is the "
                    "listener's name and its peer edges are its peers",
                    where=f"{where}.data.{key}",
                )
    return list(nodes)


def _check_edges(
    edges: Sequence[CanvasEdge],
    trigger_ids: set[str],
    listener_nodes: Mapping[str, CanvasNode],
) -> tuple[str | None, dict[str, list[str]]]:
    entry: str | None = None
    peers: dict[str, list[str]] = {}
    for index, edge in enumerate(edges):
        where = f"edges[{index}]"
        if edge.kind == "entry":
            if edge.source not in trigger_ids:
                _fail(
                    "an entry edge leaves the trigger node",
                    where=f"{where}.source",
                    got=edge.source,
                )
            if entry is not None:
                _fail("a canvas has at most one entry edge", where=where)
            entry = edge.target
        elif edge.kind == "peer":
            if edge.source not in listener_nodes:
                _fail(
                    "a peer edge leaves a listener node",
                    where=f"{where}.source",
                    got=edge.source,
                )
            peers.setdefault(edge.source, []).append(edge.target)
        else:
            _fail(
                f"unknown edge kind {edge.kind!r}",
                where=f"{where}.kind",
                expected=list(EDGE_KINDS),
                got=edge.kind,
            )
    return entry, peers


def _listener_document(
    node: CanvasNode,
    targets: Sequence[str],
    prev: Mapping[str, Any] | None,
) -> dict[str, Any]:
    where = f"nodes[{node.id!r}].data"
    fields: dict[str, Any] = {}
    for key, value in node.data.items():
        if not isinstance(key, str):
            _fail("data keys must be strings", where=where, got=repr(key))
        fields[key] = _json_value(value, f"{where}.{key}")
    if "handler" not in fields and node.type in DEFAULT_HANDLERS:
        fields["handler"] = DEFAULT_HANDLERS[node.type]
    previous: Mapping[str, Any] = prev if prev is not None else {}
    for key, value in fields.items():
        if key in previous and _same(previous[key], value):
            fields[key] = copy.deepcopy(previous[key])

    raw_peers = previous.get("peers")
    prev_peers = raw_peers if isinstance(raw_peers, list) else []
    merged = _stable_merge(prev_peers, targets)
    peers_set = True
    peers_value: Any = merged
    if "peers" in previous and _peer_list(raw_peers) == merged:
        peers_value = copy.deepcopy(raw_peers)
    elif not merged and "peers" not in previous:
        peers_set = False

    out: dict[str, Any] = {"name": node.id}
    for key in previous:
        if key in fields:
            out[key] = fields[key]
        elif key == "peers" and peers_set:
            out[key] = peers_value
    for key, value in fields.items():
        out.setdefault(key, value)
    if peers_set:
        out.setdefault("peers", peers_value)
    return out


def _peer_list(raw: object) -> list[Any] | None:
    if raw is None:
        return []
    if isinstance(raw, list):
        return list(raw)
    return None


def _stable_merge(previous: Sequence[Any], current: Sequence[str]) -> list[str]:
    """``current`` in ``previous``'s order where it can be, the rest after."""
    remaining = Counter(current)
    merged: list[str] = []
    for item in previous:
        if isinstance(item, str) and remaining[item] > 0:
            merged.append(item)
            remaining[item] -= 1
    for item in current:
        if remaining[item] > 0:
            merged.append(item)
            remaining[item] -= 1
    return merged


def _entry_document(
    target: str | None, order: Sequence[str], prev: Mapping[str, Any]
) -> tuple[bool, Any]:
    """Whether to write ``entry``, and what: the previous spelling if it holds."""
    implicit = order[0] if order else None
    had = "entry" in prev
    old = prev.get("entry")
    if target is None:
        return (had and old is None), None
    if had and old == target:
        return True, copy.deepcopy(old)
    if target == implicit and old is None:
        return had, None
    return True, target


# --------------------------------------------------------------------------
# Text


class _Dumper(yaml.SafeDumper):
    """Safe YAML, block style, indented lists, no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


# PyYAML writes these line breaks raw outside double quotes, and reads them back
# folded; double quotes escape them.
_RAW_BREAKS: Final = frozenset("\x85\u2028\u2029")


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # The emitter falls back to quotes when a literal block cannot hold the text.
    style: str | None = "|" if "\n" in data else None
    if not _RAW_BREAKS.isdisjoint(data):
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)

_UNPARSED: Final = object()


def render_yaml(document: Mapping[str, Any], previous_text: str | None = None) -> str:
    """YAML text for a document, keeping ``previous_text`` when it still fits.

    Args:
        document: The organism document.
        previous_text: The text the document was edited from, if any. Returned
            unchanged (comments, formatting and all) when it parses to a
            document with the same meaning.

    Returns:
        ``previous_text``, or new text: keys in the conventional order, block
        style, multi-line strings as literal blocks, no anchors, no line
        wrapping, unicode as is.
    """
    if previous_text is not None:
        try:
            parsed: Any = yaml.safe_load(previous_text)
        except (yaml.YAMLError, RecursionError):
            parsed = _UNPARSED
        if parsed is not _UNPARSED and _same(parsed, document):
            return previous_text
    return yaml.dump(
        _conventional(document),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )


def _conventional(document: Mapping[str, Any]) -> dict[Any, Any]:
    top = dict(document)
    organism = top.get("organism")
    if isinstance(organism, Mapping):
        top["organism"] = _ordered_map(organism, _ORGANISM_ORDER)
    listeners = top.get("listeners")
    if isinstance(listeners, list):
        top["listeners"] = [
            _ordered_map(item, _LISTENER_ORDER) if isinstance(item, Mapping) else item
            for item in listeners
        ]
    ordered = _ordered_map(top, _TOP_LEVEL_ORDER)
    if "listeners" in ordered:
        ordered["listeners"] = ordered.pop("listeners")
    return ordered


# --------------------------------------------------------------------------
# Meaning


def same_meaning(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two organism documents say the same thing.

    Maps compare without regard to key order; lists (listeners, peers, anything
    else) in order. Scalars compare by value and kind: ``true`` is not ``1``,
    ``1`` is not ``1.0``, ``"1"`` is not ``1``; NaN equals NaN.

    Args:
        a: One document.
        b: The other.

    Returns:
        True when they have the same meaning.
    """
    return _same(a, b)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "seq"
    return type(value).__name__


def _same(a: object, b: object) -> bool:
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == "map":
        left = {(_kind(k), k): v for k, v in cast("Mapping[Any, Any]", a).items()}
        right = {(_kind(k), k): v for k, v in cast("Mapping[Any, Any]", b).items()}
        return left.keys() == right.keys() and all(
            _same(value, right[key]) for key, value in left.items()
        )
    if kind == "seq":
        left_items = cast("Sequence[Any]", a)
        right_items = cast("Sequence[Any]", b)
        return len(left_items) == len(right_items) and all(
            _same(x, y) for x, y in zip(left_items, right_items, strict=True)
        )
    if kind == "float":
        x, y = cast("float", a), cast("float", b)
        return x == y or (math.isnan(x) and math.isnan(y))
    return a == b


# --------------------------------------------------------------------------
# Helpers


def _json_value(value: object, where: str) -> Any:
    """A copy of ``value`` as plain JSON, nested map keys sorted, or CanvasError."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INTEGER:
            _fail(
                "the integer is too large for the editor; quote it",
                where=where,
                expected=f"at most {_MAX_SAFE_INTEGER} in size",
                got=value,
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(
                "the editor cannot hold infinite or NaN numbers; quote it",
                where=where,
                got=repr(value),
            )
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                _fail(
                    "map keys must be strings for the editor; quote it",
                    where=where,
                    expected="string",
                    got=repr(key),
                )
        return {key: _json_value(value[key], f"{where}.{key}") for key in sorted(value)}
    message = (
        f"the editor cannot hold a {type(value).__name__} (a date, binary or set); "
        "quote it to make it a string"
    )
    raise CanvasError(message, where=where, got=repr(value))


def _ordered_map(
    mapping: Mapping[Any, Any], first: Sequence[str], *, rest_sorted: bool = False
) -> dict[Any, Any]:
    ordered = {key: mapping[key] for key in first if key in mapping}
    rest = [key for key in mapping if key not in ordered]
    if rest_sorted:
        rest.sort()
    ordered.update((key, mapping[key]) for key in rest)
    return ordered


def _fail(
    message: str, *, where: str, expected: Any = None, got: Any = None
) -> NoReturn:
    raise CanvasError(message, where=where, expected=expected, got=got)
