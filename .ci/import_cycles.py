"""Fail when modules of ``app`` import each other in a cycle, and print every cycle found.

Theory of operation: grimp builds the import graph of the package from the source, every
``import`` statement counted (function-local ones and those under ``TYPE_CHECKING`` too: a
cycle hidden that way is still one concept depending on another and back). The strongly
connected components of that graph with more than one module are the cycles; for each, the
shortest loop through its first module is printed with the line of every import on it, which
is where a fix starts. Exit status 0 when there is none, 1 otherwise.

Usage: ``python .ci/import_cycles.py [package]`` from the repository root.
"""

from __future__ import annotations

import itertools
import sys
from collections import deque
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def components(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(adjacency):
        if root in index:
            continue
        work = [(root, iter(sorted(adjacency[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(adjacency[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def shortest_loop(adjacency: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest import path from ``start`` back to itself inside one component."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(adjacency[node] & within):
            if succ == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if succ not in previous:
                previous[succ] = node
                queue.append(succ)
    raise AssertionError(f"{start} is in a component but on no loop")


def main(package: str = "app") -> int:
    sys.path.insert(0, str(ROOT))  # this checkout's package, not an installed one
    graph = grimp.build_graph(package, cache_dir=None)
    adjacency = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = components(adjacency)
    for number, members in enumerate(cycles, start=1):
        print(f"import cycle {number}: {len(members)} modules: {', '.join(members)}")
        loop = shortest_loop(adjacency, members[0], set(members))
        for importer, imported in itertools.pairwise(loop):
            details = graph.get_import_details(importer=importer, imported=imported)
            where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details)
            print(f"    {importer} -> {imported}   ({where})")
    if cycles:
        print(f"{len(cycles)} import cycle(s) in {package}; none is allowed")
        return 1
    print(f"no import cycle in {package} ({len(adjacency)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
