"""Arranging an export's tree of turns into a conversation: the kept path plus its branches.

Chat exports store a conversation as a tree (a reply regenerated or a message edited starts a
sibling subtree). :func:`arrange` turns the nodes into :class:`~connectors.records.Message` s
with a ``position`` (depth among kept turns) and a ``branch`` (0 on the main path).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.records import Message, Role


@dataclass(frozen=True)
class Turn:
    """A turn worth keeping, before its place in the conversation is known."""

    role: Role
    content: str
    external_id: str | None = None
    created_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    """A node of an export's message tree; ``turn`` is None when it holds nothing to keep."""

    id: str
    parent: str | None
    turn: Turn | None


def arrange(nodes: Sequence[Node], leaf: str | None) -> tuple[Message, ...]:
    """The path from the root to ``leaf`` as branch 0, every other subtree as branches 1, 2, ...

    Positions count kept turns only. Branch numbers are handed out per position, so (position,
    branch) is unique; ``parent_external_id`` links each message to the kept turn before it, so
    siblings (a reply and its regenerations) share a parent. Without a known ``leaf`` the main
    path follows the last child at each fork. Parent cycles end the walk instead of looping.
    """
    by_id: dict[str, Node] = {}
    for node in nodes:
        by_id.setdefault(node.id, node)
    children: dict[str | None, list[str]] = {}
    for node in by_id.values():
        parent = node.parent if node.parent in by_id and node.parent != node.id else None
        children.setdefault(parent, []).append(node.id)

    messages: list[Message] = []
    path = _main_path(by_id, children, leaf)
    forks: list[tuple[str | None, int, str | None]] = [(None, 0, None)]
    position: int = 0
    parent_id: str | None = None
    for node_id in path:
        turn = by_id[node_id].turn
        if turn is not None:
            message = _message(turn, node_id, position, 0, parent_id)
            messages.append(message)
            position, parent_id = position + 1, message.external_id
        forks.append((node_id, position, parent_id))

    visited = set(path)
    branches: dict[int, int] = {}
    for fork, fork_position, fork_parent in forks:
        for child in children.get(fork, []):
            if child not in visited:
                subtree = _subtree(child, fork_position, fork_parent, by_id, children, visited, branches)
                messages.extend(subtree)
    return tuple(sorted(messages, key=lambda m: (m.position, m.branch)))


def _main_path(by_id: Mapping[str, Node], children: Mapping[str | None, list[str]], leaf: str | None) -> list[str]:
    if leaf not in by_id:
        leaf, seen = None, set[str | None]()
        while children.get(leaf) and leaf not in seen:
            seen.add(leaf)
            leaf = children[leaf][-1]
    path: list[str] = []
    seen_on_path: set[str] = set()
    node_id = leaf
    while node_id is not None and node_id in by_id and node_id not in seen_on_path:
        seen_on_path.add(node_id)
        path.append(node_id)
        node_id = by_id[node_id].parent
    return path[::-1]


def _subtree(
    root: str,
    position: int,
    parent_id: str | None,
    by_id: Mapping[str, Node],
    children: Mapping[str | None, list[str]],
    visited: set[str],
    branches: dict[int, int],
) -> Iterator[Message]:
    stack = [(root, position, parent_id)]
    while stack:
        node_id, position, parent_id = stack.pop()
        if node_id in visited:
            continue
        visited.add(node_id)
        turn = by_id[node_id].turn
        if turn is not None:
            branches[position] = branches.get(position, 0) + 1
            message = _message(turn, node_id, position, branches[position], parent_id)
            yield message
            position, parent_id = position + 1, message.external_id
        stack.extend((child, position, parent_id) for child in reversed(children.get(node_id, [])))


def _message(turn: Turn, node_id: str, position: int, branch: int, parent_id: str | None) -> Message:
    return Message(
        role=turn.role,
        content=turn.content,
        position=position,
        branch=branch,
        external_id=turn.external_id or node_id,
        parent_external_id=parent_id,
        created_at=turn.created_at,
        metadata=turn.metadata,
    )
