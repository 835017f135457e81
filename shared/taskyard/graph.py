"""Dependency graphs, as the CLI and the status page draw them. Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping


def depths(parents: Mapping[str, Collection[str]]) -> dict[str, int]:
    """How far below the graph's first nodes each node is: the longest way
    down to it (a node waits for its `parents`; those outside the graph are
    left out). Found level by level, so a chain of any length is fine."""
    above = {node: {p for p in waits if p in parents} for node, waits in parents.items()}
    below: dict[str, list[str]] = {node: [] for node in parents}
    for node, waits in above.items():
        for parent in waits:
            below[parent].append(node)
    left = {node: len(waits) for node, waits in above.items()}
    depth = dict.fromkeys(parents, 0)
    ready = [node for node, count in left.items() if count == 0]
    while ready:
        node = ready.pop()
        for child in below[node]:
            depth[child] = max(depth[child], depth[node] + 1)
            left[child] -= 1
            if left[child] == 0:
                ready.append(child)
    return depth
