"""Griffe extension (mkdocstrings, ``extensions:`` in mkdocs.yml): reads lepton-cdk's Sphinx-flavoured docstrings as Markdown.

The docstrings are written for ``help()`` and editors first, in the Sphinx
field style (``:param name:``), which mkdocstrings parses itself. Three
reStructuredText habits inside the prose would otherwise show up literally
on the site, so they are rewritten on the way in (the sources stay as they are):

- roles (``:class:`~lepton_cdk.core.IBucket```, ``:func:``, ``:mod:`` ...)
  become links to the reference when the target is documented on the site,
  plain code otherwise (autorefs' *optional* references, so a role naming
  something undocumented is never a broken link);
- a list that starts right under a line of text ("Default settings:" then
  "- ...") gets the blank line Markdown needs to see it as a list;
- a literal block announced with ``::`` loses the second colon (its
  indented block is a Markdown code block already).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`<>]+?)`")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+\S")


def _role_to_autoref(obj: griffe.Object, match: re.Match[str]) -> str:
    short, target = match.group(1) == "~", match.group(2).strip().rstrip("()")
    shown = target.rsplit(".", 1)[-1] if short else target
    if "." not in target:
        # A bare name is relative to the module that wrote it (``:class:`AccessLogBucket``` inside aws/bucket.py).
        target = f"{obj.module.path}.{target}"
    return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'


def markdown_docstring(obj: griffe.Object, text: str) -> str:
    """``text`` (a docstring in lepton-cdk's Sphinx style) with roles, lists and ``::`` blocks made Markdown."""
    text = _ROLE.sub(lambda m: _role_to_autoref(obj, m), text)
    lines = text.splitlines()
    out: list[str] = []
    in_fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        previous = out[-1] if out else ""
        if (not in_fence and _LIST_ITEM.match(line) and previous.strip() and not _LIST_ITEM.match(previous)
                and not previous.startswith((" ", "\t")) and not line.startswith((" ", "\t"))):
            out.append("")
        if not in_fence and line.rstrip().endswith("::") and (i + 1 == len(lines) or not lines[i + 1].strip()):
            line = line.rstrip()[:-1]
        out.append(line)
    return "\n".join(out)


class SphinxProseAsMarkdown(griffe.Extension):
    """Rewrites every docstring's prose as it is loaded; the ``:param:`` fields are left to the Sphinx parser."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called by griffe for every object it loads (module, class, function, attribute)."""
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj, obj.docstring.value)
