"""YAML documents read safely: ``yaml.safe_load`` with alias expansion bounded and recursion and repeated keys refused.

Every YAML file lepton reads (pipeline configs, the checkov baseline) goes
through :func:`load_yaml`, so a "billion laughs" document fails in one line
instead of exhausting memory wherever its value is walked later.
"""

from __future__ import annotations

from typing import Any

import yaml


class YamlDocumentError(ValueError):
    """A YAML document is unsafe or malformed; the message names the document, the problem and the fix."""


# Nodes a YAML document may hold once every alias is expanded: generous for a
# real config (thousands of drop_columns), and a "billion laughs" document
# (nested aliases, each ten times the last) passes it within a few levels.
MAX_YAML_NODES = 100_000


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_yaml_nodes(root: yaml.Node, where: str, max_nodes: int, error: type[Exception]) -> None:
    """Refuse a composed document that expands past ``max_nodes``, refers to itself, or repeats a key.

    PyYAML shares an aliased node instead of copying it, so the document is
    small in memory; whatever walks the loaded value later (validation, JSON,
    a remote request) does the expansion. Counting nodes with every alias
    expanded, once per distinct node, finds that size without doing it.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path: an alias back to one of these is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _yaml_children(node))
            if sizes[key] > max_nodes:
                raise error(f"{where} expands to more than {max_nodes:,} values through YAML aliases (*name); "
                                      "write the values out instead of nesting aliases")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise error(f"{where} has a YAML alias inside its own anchor (line {node.start_mark.line + 1}); remove the recursion")
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, _ in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in seen:
                        raise error(f"{where}: key {k.value!r} appears twice in one mapping (line {k.start_mark.line + 1}); "
                                              "keep one")
                    seen.add(k.value)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _yaml_children(node) if id(c) not in sizes)


def load_yaml(text: str, where: str, *, max_nodes: int = MAX_YAML_NODES, error: type[Exception] = YamlDocumentError) -> Any:
    """``yaml.safe_load`` with alias expansion bounded, recursion and repeated keys refused (``error``, :class:`YamlDocumentError` by default).

    ``where`` names the document in messages. The document is composed into
    nodes and checked (:func:`_check_yaml_nodes`) before any Python value is
    built from it.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(node, where, max_nodes, error)
        return loader.construct_document(node)
    finally:
        loader.dispose()
