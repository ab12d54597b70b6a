"""The docs site builds strictly, its generated pages cover what ships, and the README and docs examples stay true.

The site is built once per module with ``mkdocs build --strict`` (what ``make
docs`` runs), into a temporary folder: a broken link or anchor, a page missing
from the navigation or an API reference that no longer resolves fails here,
with mkdocs' own warning lines in the message.
"""

from __future__ import annotations

import ast
import html as html_module
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.manifests import write_fake_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
README = REPO_ROOT / "README.md"
# The packages whose API pages are generated from __all__ (docs/reference/api/<name>.md).
API_PACKAGES = ("aws", "gcp", "patterns", "core", "contract", "checks", "review", "data", "testing")
# Loaded by the build process means the build started jsii or torch: the reference must be read statically.
HEAVY_MODULES = ("jsii", "cdktf", "constructs", "cdktf_cdktf_provider_aws", "cdktf_cdktf_provider_google", "torch",
                 "onnxruntime", "pandas")

# Runs the mkdocs CLI in-process so the modules the build loaded can be listed afterwards.
_BUILD = """
import json, sys
from mkdocs.__main__ import cli
try:
    cli.main(["build", "--strict", "--site-dir", sys.argv[1]], prog_name="mkdocs", standalone_mode=False)
finally:
    heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[3])))
    open(sys.argv[2], "w").write(json.dumps(heavy))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built strictly from this checkout; fails with mkdocs' warnings when it does not build."""
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the docs tools are missing ({exc.name}): install them with `pip install -e '.[docs]'` (make setup does)")
    out = tmp_path_factory.mktemp("site")
    loaded = out.parent / "loaded-modules.json"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(out / "site"), str(loaded), json.dumps(HEAVY_MODULES)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems or (proc.stdout + proc.stderr).splitlines()[-30:])
    heavy = json.loads(loaded.read_text())
    assert heavy == [], f"building the docs imported {heavy}: the reference must be read statically (griffe), not imported"
    return out / "site"


def page(site: Path, name: str) -> str:
    """The built HTML of ``docs/<name>.md``."""
    return (site / name / "index.html").read_text(encoding="utf-8")


def _commands(command, name, parent):
    ctx = command.context_class(command, info_name=name, parent=parent)
    yield ctx, command
    for sub_name in getattr(command, "list_commands", lambda _ctx: [])(ctx):
        sub = command.get_command(ctx, sub_name)
        if not sub.hidden:
            yield from _commands(sub, sub_name, ctx)


def test_cli_reference_has_every_command_and_option(site):
    from typer.main import get_command

    from lepton_cdk.cli import app

    html = page(site, "reference/cli")
    missing = []
    for ctx, command in _commands(get_command(app), "lepton", None):
        anchor = re.sub(r"[^a-z0-9]+", "-", ctx.command_path.lower()).strip("-")
        if f'id="{anchor}"' not in html:
            missing.append(ctx.command_path)
        for param in command.get_params(ctx):
            for opt in param.opts if param.param_type_name == "option" else ():
                if f"<code>{opt}" not in html:
                    missing.append(f"{ctx.command_path} {opt}")
    assert missing == [], f"the CLI reference lacks {missing}"


def test_policy_rules_page_has_every_rule_with_its_level_and_fix(site):
    from lepton_cdk.checks.rules import RULES

    html = page(site, "reference/policy-rules")
    text = " ".join(html_module.unescape(re.sub(r"<[^>]+>", "", html)).split())
    for rule in RULES.values():
        assert f'id="{rule.id.lower()}"' in html, f"{rule.id} has no section on the rules page"
        section = text[text.rindex(f"{rule.id}: {rule.name}"):]  # the last: the table of contents names it first
        assert section.split(" Fix: ")[0].endswith(" ".join(rule.explanation.split())), f"{rule.id}: its explanation is not shown"
        assert f"Level: {rule.level}." in section[:200], f"{rule.id}: level {rule.level} not shown"
        assert section.split(" Fix: ", 1)[1].startswith(" ".join(rule.fix.split())), f"{rule.id}: its fix is not shown"


def _exports(package: str) -> list[str]:
    tree = ast.parse((REPO_ROOT / "lepton_cdk" / package / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


@pytest.mark.parametrize("package", API_PACKAGES)
def test_api_reference_documents_everything_the_package_exports(site, package):
    exports = _exports(package)
    assert exports, f"lepton_cdk.{package} has no __all__ to document"
    html = page(site, f"reference/api/{package}")
    # documented on this page, or listed under "Re-exported" with a link to where it is documented
    undocumented = [name for name in exports if f'id="lepton_cdk.{package}.{name}"' not in html and f"<code>{name}</code>: " not in html]
    assert undocumented == [], f"docs/reference/api/{package}.md does not document lepton_cdk.{package}.{undocumented}"


def test_constructs_reference_shows_props_and_their_default_behaviour(site):
    html = page(site, "reference/api/aws")
    start = html.index('id="lepton_cdk.aws.ModelBucket"')
    end = re.compile(r'id="lepton_cdk\.aws\.(?!ModelBucket\b)').search(html, start)  # the next object's entry
    section = re.sub(r"<[^>]+>", " ", html[start:end.start() if end else len(html)])
    # a prop of ModelBucket's signature, with its documented default behaviour, from the docstring
    assert "retain_on_destroy" in section and "prevent_destroy" in section
    assert "grant_read" in section, "inherited methods (grant_read, upload_artifacts) must be on the construct's entry"


def _markdown_links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_readme_is_a_front_door_whose_links_all_resolve(site):
    text = README.read_text()
    assert len(text.splitlines()) < 250, "the README must stay under 250 lines: move detail into docs/"
    for required in ("make demo", "make test", "| `lepton demo` |", "```python"):
        assert required in text, f"the README lacks {required!r}"
    broken = []
    for link in _markdown_links(text):
        if re.match(r"^[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = REPO_ROOT / target
        if not path.exists():
            broken.append(link)
        elif anchor and path.suffix == ".md" and path.is_relative_to(DOCS):
            name = path.relative_to(DOCS).with_suffix("").as_posix()
            built = site / ("" if name == "index" else name) / "index.html"
            if f'id="{anchor}"' not in built.read_text(encoding="utf-8"):
                broken.append(link)
    assert broken == [], f"README links to nothing: {broken}"


def test_readme_command_table_names_every_command():
    from typer.main import get_command

    from lepton_cdk.cli import app

    root = get_command(app)
    table = "\n".join(line for line in README.read_text().splitlines() if line.startswith("| `lepton "))
    missing = [name for name, command in root.commands.items() if not command.hidden and f"`lepton {name}" not in table]
    assert missing == [], f"the README's command table lacks `lepton {missing}`"


def test_readme_construct_example_synthesizes(tmp_path):
    """The README's one example, run as written, in a project holding a manifest at build/demo/manifest.json."""
    text = README.read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    write_fake_manifest(tmp_path / "build" / "demo")
    (tmp_path / "main.py").write_text(example)
    proc = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    stacks = list((tmp_path / "cdktf.out" / "stacks").glob("*/cdk.tf.json"))
    assert len(stacks) == 1, stacks
    resources = json.loads(stacks[0].read_text())["resource"]
    assert "aws_s3_bucket" in resources and "aws_autoscaling_group" in resources
    assert len(resources["aws_s3_object"]) == 2, "one object per manifest artifact"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_docs_examples_pass_only_props_the_constructs_take():
    """Every keyword a README/docs example passes to a lepton_cdk class or function is one its signature has.

    Props are being renamed for one vocabulary across clouds; an example still
    spelling an old name would teach users an error.
    """
    import griffe

    root = griffe.load("lepton_cdk", search_paths=[str(REPO_ROOT)], resolve_aliases=True, resolve_external=False)
    checked, wrong = 0, []
    for doc in _doc_pages():
        blocks = _python_blocks(doc.read_text())
        imported: dict[str, str] = {}
        trees = []
        for block in blocks:
            try:
                tree = ast.parse(block)
            except SyntaxError as exc:
                wrong.append(f"{doc.relative_to(REPO_ROOT)}: a python block is not Python: {exc}")
                continue
            trees.append(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lepton_cdk"):
                    imported.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        for tree in trees:
            for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
                func = call.func
                if isinstance(func, ast.Name) and func.id in imported:
                    path = imported[func.id]
                elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in imported:
                    path = f"{imported[func.value.id]}.{func.attr}"
                else:
                    continue
                obj = root[path.removeprefix("lepton_cdk.")]
                obj = obj.final_target if obj.is_alias else obj
                if obj.is_class:
                    init = obj.all_members.get("__init__")
                    obj = init.final_target if init is not None and init.is_alias else init
                if obj is None or not obj.is_function:
                    continue
                params = obj.parameters
                if any(p.kind is not None and p.kind.value == "variadic keyword" for p in params):
                    continue
                names = {p.name for p in params}
                checked += 1
                wrong += [f"{doc.relative_to(REPO_ROOT)}: {path}(... {kw.arg}=...) but it takes {sorted(names - {'self', 'cls'})}"
                          for kw in call.keywords if kw.arg is not None and kw.arg not in names]
    assert wrong == [], "\n".join(wrong)
    assert checked >= 5, f"only {checked} calls checked: the examples were not found"


def test_infra_app_settings_table_lists_exactly_the_variables_the_app_reads():
    source = (REPO_ROOT / "lepton_cdk" / "app" / "config.py").read_text()
    read = {n.value for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and re.fullmatch(r"LEPTON_[A-Z0-9_]*[A-Z0-9]", n.value)}  # not a prefix
    documented = set(re.findall(r"^\| `(LEPTON_[A-Z0-9_]+)` \|", (DOCS / "deploying.md").read_text(), re.M))
    assert read, "no LEPTON_* settings found in lepton_cdk/app/config.py"
    assert documented == read, (f"docs/deploying.md's settings table is out of date: missing {sorted(read - documented)}, "
                                f"no longer read {sorted(documented - read)}")
