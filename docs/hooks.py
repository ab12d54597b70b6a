"""MkDocs hook that writes the generated reference pages at build time (``hooks:`` in mkdocs.yml).

A page asks for a generated section with a marker line of its own,
``<!-- lepton:generate NAME -->``; the hook replaces it with Markdown built
from the code, so the page cannot drift from what ships:

- ``cli``: every ``lepton`` command, from the click command typer builds out
  of :data:`lepton_cdk.cli.app` (usage, help, arguments and options, as
  ``lepton ... --help`` prints them);
- ``policy-rules``: every rule of the packs in :mod:`lepton_cdk.checks.rules`
  (id, name, level, explanation, fix);
- ``api PACKAGE``: the mkdocstrings blocks for everything ``PACKAGE``
  exports (its ``__all__``), grouped by the module that defines it with that
  module's docstring (where the "Default settings" of each construct are
  written) above its members. griffe reads the sources without importing
  them, so a name added to ``__all__`` appears on the site by itself.

The CLI and rules import only the standard library, typer and the modules
named; the API pages are read statically: no cdktf/jsii, no torch, so the
build stays fast and needs no extras beyond ``docs``. An unknown marker
fails the build with the page and the names known.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

REPO_ROOT = Path(__file__).resolve().parents[1]

MARKER = re.compile(r"^<!-- lepton:generate ([a-z][a-z0-9-]*)((?: [A-Za-z0-9_.]+)*) -->[ \t]*$", re.MULTILINE)

# Characters that would turn help text into Markdown or HTML it never meant: escaped outside `code spans`.
_MARKDOWN_SPECIAL = re.compile(r"([\\*_\[\]|])")


def escape_markdown(text: str) -> str:
    """``text`` as literal Markdown, keeping its ``code spans`` (help texts use them for commands and paths)."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part)  # kept as written: Python-Markdown's tables do not split cells inside a code span
        else:
            part = part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            out.append(_MARKDOWN_SPECIAL.sub(r"\\\1", part))
    return "".join(out)


def _code(text: str) -> str:
    """``text`` as one inline code span (a pipe inside it does not split a table cell)."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def _paragraphs(text: str) -> list[str]:
    # click keeps the docstring's hard line breaks; a blank line separates paragraphs. \b is click's "do not rewrap".
    blocks = [" ".join(line.strip() for line in block.splitlines() if line.strip() != "\b")
              for block in re.split(r"\n\s*\n", text.strip())]
    return [escape_markdown(block) for block in blocks if block]


def _commands(command: Any, name: str, parent: Any) -> Iterator[tuple[Any, Any]]:
    """``(context, command)`` for ``command`` and every visible subcommand, depth first, in ``--help`` order."""
    ctx = command.context_class(command, info_name=name, parent=parent)
    yield ctx, command
    list_commands = getattr(command, "list_commands", None)
    for sub_name in list_commands(ctx) if list_commands else ():
        sub = command.get_command(ctx, sub_name)
        if sub is not None and not sub.hidden:
            yield from _commands(sub, sub_name, ctx)


def _anchor(command_path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", command_path.lower()).strip("-")


def cli_reference() -> str:
    """Markdown for every ``lepton`` command: an index table, then each command's usage, help and parameters."""
    from typer.main import get_command

    from lepton_cdk.cli import app

    root = get_command(app)
    commands = list(_commands(root, "lepton", None))
    lines = ["| command | what it does |", "|---|---|"]
    for ctx, command in commands[1:]:
        if not getattr(command, "commands", None):  # groups are listed through their commands
            lines.append(f"| [{_code(ctx.command_path)}](#{_anchor(ctx.command_path)}) | "
                         f"{escape_markdown(command.get_short_help_str(limit=200))} |")
    for ctx, command in commands:
        lines += ["", f"## {ctx.command_path} {{#{_anchor(ctx.command_path)}}}", ""]
        lines += ["```text", f"{ctx.command_path} {' '.join(command.collect_usage_pieces(ctx))}".rstrip(), "```", ""]
        for paragraph in _paragraphs(command.help or ""):
            lines += [paragraph, ""]
        records = [(param, param.get_help_record(ctx)) for param in command.get_params(ctx)]
        rows = [(param, record) for param, record in records if record is not None]
        arguments = [(p, r) for p, r in rows if p.param_type_name == "argument"]
        options = [(p, r) for p, r in rows if p.param_type_name != "argument"]
        for title, group in (("Arguments", arguments), ("Options", options)):
            if group:
                lines += [f"**{title}**", "", "| name | description |", "|---|---|"]
                lines += [f"| {_code(names)} | {escape_markdown(' '.join(text.split()))} |" for _, (names, text) in group]
                lines.append("")
        subcommands = [name for name in getattr(command, "commands", {})]
        if subcommands and command is not root:
            links = ", ".join(f"[{_code(f'{ctx.command_path} {name}')}](#{_anchor(f'{ctx.command_path} {name}')})"
                              for name in subcommands)
            lines += [f"Commands: {links}.", ""]
    return "\n".join(lines)


def policy_rules() -> str:
    """Markdown for every rule pack and rule: a summary table, then each rule's explanation and fix."""
    from lepton_cdk.checks import rules as rule_module
    from lepton_cdk.checks.rules import RULES, Pack

    # Every pack the module defines (LeptonCore today), so a new pack shows up without touching this file.
    packs = [value for value in vars(rule_module).values() if isinstance(value, Pack)]
    lines = []
    for pack in packs:
        lines += [f"## Pack `{pack.name}`", "", "| id | level | rule |", "|---|---|---|"]
        lines += [f"| [{r.id}](#{_anchor(r.id)}) | {r.level} | {escape_markdown(r.name)} |" for r in pack.rules]
        lines.append("")
    in_a_pack = {r.id for pack in packs for r in pack.rules}
    for rule in RULES.values():
        packs_of_rule = ", ".join(f"`{p.name}`" for p in packs if rule in p.rules) or "none (apply it with a pack of your own)"
        lines += [f"## {rule.id}: {escape_markdown(rule.name)} {{#{_anchor(rule.id)}}}", "",
                  f"Level: **{rule.level}**. Pack: {packs_of_rule}.", "",
                  escape_markdown(rule.explanation), "",
                  f"**Fix:** {escape_markdown(rule.fix)}", ""]
    missing = in_a_pack - set(RULES)
    if missing:
        raise PluginError(f"policy rules: {sorted(missing)} are in a pack but not in RULES; add them to lepton_cdk.checks.rules.RULES")
    return "\n".join(lines)


def _block(identifier: str, **options: Any) -> list[str]:
    """One mkdocstrings ``:::`` block with its options."""
    lines = [f"::: {identifier}"]
    if options:
        lines.append("    options:")
        lines += [f"      {key}: {str(value).lower() if isinstance(value, bool) else value}" for key, value in options.items()]
    return [*lines, ""]


def api_reference(package: str) -> str:
    """mkdocstrings blocks for ``package``: its docstring, then per defining module its docstring and exported members."""
    import griffe

    root = griffe.load(package, search_paths=[str(REPO_ROOT)], resolve_aliases=False)
    lines = _block(package, members=False, show_root_heading=False, show_root_toc_entry=False)
    if not root.exports:
        # No __all__ (lepton_cdk.serve): the package is a namespace; each public module is documented as it is.
        for module in sorted(root.modules.values(), key=lambda m: m.name):
            if not module.name.startswith("_"):
                lines += [f"## `{module.path}`", ""]
                lines += _block(module.path, show_root_heading=False, show_root_toc_entry=False, heading_level=3)
        return "\n".join(lines)
    exported = [str(name) for name in root.exports]
    # In the order the package imports them (its members' order), which is the order it presents them in.
    ordered = [name for name in root.members if name in exported] + [name for name in exported if name not in root.members]
    by_module: dict[str, list[str]] = {}
    elsewhere: list[tuple[str, str]] = []
    for name in ordered:
        member = root.members.get(name)
        if member is None:
            raise PluginError(f"{package}.__all__ names {name!r}, which {package} does not define or import")
        target = member.target_path if member.is_alias else member.path
        module = target.rsplit(".", 1)[0]
        if module == package or module.startswith(package + "."):
            by_module.setdefault(module, []).append(name)
        else:
            elsewhere.append((name, target))
    for module, names in by_module.items():
        if module != package:
            lines += [f"## `{module}`", ""]
            lines += _block(module, members=False, show_root_heading=False, show_root_toc_entry=False)
        for name in names:
            lines += _block(f"{package}.{name}", heading_level=3 if module != package else 2, show_root_full_path=False)
    if elsewhere:
        # Re-exports of another documented package: a link, not a second copy (one page per object keeps links unambiguous).
        lines += ["## Re-exported", "", f"`{package}` also exports these, documented where they are defined:", ""]
        lines += [f"- `{name}`: [`{target}`][{target}]" for name, target in elsewhere]
        lines.append("")
    return "\n".join(lines)


GENERATORS: dict[str, Callable[..., str]] = {"cli": cli_reference, "policy-rules": policy_rules, "api": api_reference}
"""Generated sections by marker name."""


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    """Replace each ``<!-- lepton:generate NAME -->`` line of a page with the section it names."""

    def generate(match: re.Match[str]) -> str:
        name, args = match.group(1), match.group(2).split()
        if name not in GENERATORS:
            raise PluginError(f"{page.file.src_uri}: unknown generated section {name!r}; use one of {', '.join(sorted(GENERATORS))}")
        try:
            inspect.signature(GENERATORS[name]).bind(*args)
        except TypeError as exc:
            raise PluginError(f"{page.file.src_uri}: <!-- lepton:generate {name} ... --> takes other arguments: {exc}") from exc
        return GENERATORS[name](*args)

    return MARKER.sub(generate, markdown)
