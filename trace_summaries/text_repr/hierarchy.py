"""The shape of the event tree: flat like the original's summarizer, or nested by parent (ours).

The original's summarization passed one root per event, with no children, although its tree renderer could
nest; ``nest=True`` builds the real tree from ``$ai_parent_id`` so a reader sees which generations ran inside
which span. Events whose parent is unknown (or is the trace itself) are roots; cycles are broken, so every
event appears exactly once either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trace_summaries.text_repr.events import SPAN_EVENT, RenderEvent
from trace_summaries.text_repr.values import as_text

# Properties that name an event, so that others can declare it as their parent.
_ID_PROPERTIES = ("$ai_span_id", "$ai_generation_id")


@dataclass
class TreeNode:
    event: RenderEvent
    children: list[TreeNode] = field(default_factory=list)


def flat_tree(events: list[RenderEvent]) -> list[TreeNode]:
    return [TreeNode(event) for event in events]


def _ids(event: RenderEvent) -> list[str]:
    ids = [as_text(event.properties[key]) for key in _ID_PROPERTIES if event.properties.get(key)]
    if event.uuid:
        ids.append(event.uuid)
    return ids


def nested_tree(events: list[RenderEvent]) -> list[TreeNode]:
    """Events under their parent, in the given (time) order at every level."""
    # Spans claim their ids first: some SDKs also stamp a span's id on the generations inside it, and
    # spans are captured when they end, after those generations.
    owner: dict[str, int] = {}
    by_kind = sorted(range(len(events)), key=lambda position: events[position].event != SPAN_EVENT)
    for position in by_kind:
        for event_id in _ids(events[position]):
            owner.setdefault(event_id, position)

    parent: list[int | None] = []
    for position, event in enumerate(events):
        parent_id = event.properties.get("$ai_parent_id")
        found = owner.get(as_text(parent_id)) if parent_id not in (None, "") else None
        parent.append(found if found != position else None)

    # Break cycles at their earliest member: an event whose ancestors lead back to itself becomes a root.
    for position in range(len(events)):
        seen: set[int] = set()
        ancestor = parent[position]
        while ancestor is not None and ancestor not in seen:
            if ancestor == position:
                parent[position] = None
                break
            seen.add(ancestor)
            ancestor = parent[ancestor]

    nodes = [TreeNode(event) for event in events]
    roots: list[TreeNode] = []
    for position, node in enumerate(nodes):
        found = parent[position]
        (roots if found is None else nodes[found].children).append(node)
    return roots


def preorder(nodes: list[TreeNode]) -> list[TreeNode]:
    """Every node of ``nodes`` and below, parents first, as leaves (used past the maximum depth)."""
    flat: list[TreeNode] = []
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        flat.append(TreeNode(node.event))
        stack.extend(reversed(node.children))
    return flat
