"""`lepton cutover shadow | split | plan | check | advance | run | rollback`: move live traffic from the old endpoint to the new one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from .options import check_output_file, number

app = typer.Typer(help="Move live traffic from the old endpoint to the new one: shadow, gated steps, rollback.", no_args_is_help=True)

PlanArg = Annotated[Path, typer.Argument(metavar="PLAN", help="The cutover plan: YAML, TOML or JSON (see docs/cutover.md).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ToOpt = Annotated[int | None, typer.Option("--to", min=0, max=100, metavar="PERCENT",
                                           help="The step to move to. Default: the next step (splitter), or the weight the settings "
                                                "file proposes (dns).")]


def _url(flag: str):
    def parse(value: str) -> str:
        parts = urlsplit(str(value).strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise typer.BadParameter(f"{value!r} is not an http(s) URL; use e.g. http://127.0.0.1:8080", param_hint=f"'{flag}'")
        return str(value).strip().rstrip("/")
    return parse


def _load(path: Path):
    from lepton_cdk.cutover.plan import load_plan

    return load_plan(path)


@app.command("shadow")
def shadow(
    primary: Annotated[str, typer.Option("--primary", metavar="URL", parser=_url("--primary"),
                                         help="The endpoint that answers callers (the old one).")],
    shadow_url: Annotated[str, typer.Option("--shadow", metavar="URL", parser=_url("--shadow"),
                                            help="The endpoint each inference request is mirrored to (the new one).")],
    listen: Annotated[str, typer.Option("--listen", metavar="HOST:PORT", help="Where callers connect (port 0: any free port, printed).")],
    atol: Annotated[float, typer.Option("--atol", parser=number(at_least=0.0),
                                        help="Largest absolute difference allowed per output value (the parity gate's rule).")] = 1e-5,
    report: Annotated[Path | None, typer.Option("--report", metavar="FILE", help="JSON report, rewritten every few seconds and on "
                                                "exit (requests, compared, disagreements, latencies).")] = None,
    queue_size: Annotated[int, typer.Option("--queue-size", min=1, max=1_000_000, help="Mirrors waiting for the shadow at most; "
                                            "beyond it they are dropped and counted.")] = 1000,
    workers: Annotated[int, typer.Option("--workers", min=1, max=256, help="Mirrors in flight to the shadow at once.")] = 4,
    shadow_timeout_s: Annotated[float, typer.Option("--shadow-timeout-s", parser=number(above=0, at_most=3600),
                                                    help="Give up on a shadow answer after this long (counted as an error).")] = 5.0,
    primary_timeout_s: Annotated[float, typer.Option("--primary-timeout-s", parser=number(above=0, at_most=3600),
                                                     help="Answer 504 when the primary takes longer.")] = 30.0,
    report_interval_s: Annotated[float, typer.Option("--report-interval-s", parser=number(above=0, at_most=3600),
                                                     help="Seconds between report writes.")] = 5.0,
) -> None:
    """Answer OIP requests from --primary while mirroring each inference to --shadow and comparing the outputs (until SIGTERM)."""
    from lepton_cdk.cutover.plan import parse_listen

    if primary == shadow_url:
        raise typer.BadParameter("--primary and --shadow are the same URL; mirror to the new endpoint", param_hint="'--shadow'")
    host, port = parse_listen(listen, "--listen")
    if report is not None:
        check_output_file(report, "--report")
    from lepton_cdk.cutover.shadow import run_shadow

    run_shadow(primary, shadow_url, host, port, atol=atol, report_path=report, queue_size=queue_size, workers=workers,
               shadow_timeout_s=shadow_timeout_s, primary_timeout_s=primary_timeout_s, report_interval_s=report_interval_s)


@app.command("split")
def split(
    plan: PlanArg,
    listen: Annotated[str | None, typer.Option("--listen", metavar="HOST:PORT", help="Override the plan's traffic.listen.")] = None,
) -> None:
    """Run the embedded traffic splitter of a plan with traffic.via: splitter (until SIGTERM)."""
    from lepton_cdk.cutover.splitter import run_splitter

    run_splitter(_load(plan), listen=listen)


def _gate_text(name: str, spec: dict) -> str:
    if name == "healthy":
        return f"healthy (ready within {spec.get('timeout_s', 5):g}s)"
    if name == "disagreement_rate":
        return f"disagreement_rate <= {spec['max']:.2%} over >= {int(spec.get('min_compared', 1))} comparisons"
    if name == "error_rate":
        return f"error_rate <= {spec['max']:.2%} over >= {int(spec.get('min_requests', 1))} requests"
    return f"p95_latency_ms <= {spec['max']:g} over >= {int(spec.get('min_requests', 1))} requests"


def _probe(url: str) -> str | None:
    """None when ``url`` answered at all (any status); else why not."""
    import httpx

    try:
        response = httpx.get(url, timeout=5.0, trust_env=False)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if response.status_code < 600 else f"status {response.status_code}"


@app.command("plan")
def plan_command(
    plan: PlanArg,
    data_plan: Annotated[bool, typer.Option("--data-plan", help="Also list what the final incremental data sync will move "
                                                                 "(runs `lepton data plan`).")] = False,
    no_probe: Annotated[bool, typer.Option("--no-probe", help="Do not check that both endpoints answer.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check a cutover plan and show its steps, gates, data sync, the weight in force and the way back."""
    from lepton_cdk.cutover.errors import PlanError
    from lepton_cdk.cutover.steps import current_percent

    p = _load(plan)
    if not no_probe:
        for side, endpoint in (("old", p.old), ("new", p.new)):
            problem = _probe(endpoint.ready_url)
            if problem is not None:
                raise PlanError(f"{p.path}: the {side} endpoint {endpoint.name} ({endpoint.url}) is unreachable ({problem}); check "
                                f"{side}.url and that it is running (or pass --no-probe)")
    doc = p.to_dict()
    doc["current_percent"] = current_percent(p)
    if data_plan and p.data_sync is not None:
        from lepton_cdk.cutover.datasync import plan_data_sync

        doc["data_sync"]["plan"] = plan_data_sync(p.data_sync)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    t = p.traffic
    via = (f"the embedded splitter{' at ' + t.listen if t.listen else ''} (state {t.state})" if t.via == "splitter"
           else f"DNS: stack {t.stack_name}, LEPTON_CUTOVER_WEIGHT in {t.settings}")
    typer.echo(f"cutover {p.path}: {p.old.name} ({p.old.url}) -> {p.new.name} ({p.new.url}) via {via}")
    typer.echo(f"  traffic now: {doc['current_percent']}% on {p.new.name}; gates measured over {p.window_s:g}s windows")
    for i, step in enumerate(p.steps):
        last = i == len(p.steps) - 1
        if last and p.data_sync is not None:
            line = f"  data   final incremental sync: {p.data_sync.plan_command}"
            sync_plan = doc["data_sync"].get("plan")
            if sync_plan:
                line += (f" -> copy {sync_plan['objects_to_copy']:,} objects ({sync_plan['bytes_to_copy']:,} bytes), "
                         f"skip {sync_plan['objects_unchanged']:,}")
            typer.echo(line)
        gates = "(last step)" if last else ("to move on: " + "; ".join(_gate_text(n, s) for n, s in step.gates.items())
                                            if step.gates else "no gates")
        marker = "*" if step.percent == doc["current_percent"] else " "
        typer.echo(f" {marker}step {step.percent:>3}%  {gates}")
    typer.echo(f"  way back: `lepton cutover rollback {plan}` sets 0% (every caller on {p.old.name}) in one step, never gated")


@app.command("check")
def check_command(
    plan: PlanArg,
    to: ToOpt = None,
    window_s: Annotated[float | None, typer.Option("--window-s", parser=number(at_least=0, at_most=86400),
                                                   help="Override the plan's window_s.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure the gates guarding the move to a step; exit 1 naming the failed gate (what CI runs before a step merges)."""
    from lepton_cdk.cutover.steps import check

    p = _load(plan)
    to_percent, result = check(p, to, window_s=window_s)
    if as_json:
        typer.echo(json.dumps({"to_percent": to_percent, "passed": result is None or result.passed,
                               "check": None if result is None else result.to_dict()}, indent=2))
    elif result is None:
        typer.echo(f"ok: {to_percent}% is the first step; nothing guards it")
    else:
        typer.echo(f"{'ok' if result.passed else 'FAILED'}: the gates of the {result.percent}% step, guarding the move to {to_percent}%")
        for gate in result.gates:
            typer.echo(f"  {'pass' if gate.passed else 'FAIL'} {gate.name}: {gate.detail}")
    if result is not None and not result.passed:
        raise result.failure()


@app.command("advance")
def advance_command(plan: PlanArg, to: ToOpt = None) -> None:
    """Check the gates of the step in force and move to the next step (the splitter's state, or the DNS settings file)."""
    from lepton_cdk.cutover.steps import advance

    p = _load(plan)
    result, applied = advance(p, to)
    if result is not None:
        for gate in result.gates:
            typer.echo(f"  pass {gate.name}: {gate.detail}")
    typer.echo(f"{applied.percent}%: {applied.how}")
    if not applied.confirmed and p.traffic.via == "splitter":
        raise typer.Exit(1)


@app.command("run")
def run_command(
    plan: PlanArg,
    report: Annotated[Path | None, typer.Option("--report", metavar="FILE", help="Write the run's report (steps, gates, numbers) "
                                                "here, after every step.")] = None,
) -> None:
    """Walk a splitter plan to 100%: at each step measure its gates, then move on; a failed gate rolls back and exits 1."""
    from lepton_cdk.cutover.errors import CutoverError
    from lepton_cdk.cutover.steps import run

    if report is not None:
        check_output_file(report, "--report")
    result = run(_load(plan), report_path=report, progress=typer.echo)
    typer.echo(f"{result.outcome}: traffic at {result.final_percent}%" + (f" ({report})" if report else ""))
    if result.outcome != "completed":
        raise CutoverError(result.reason)


@app.command("rollback")
def rollback_command(
    plan: PlanArg,
    reason: Annotated[str, typer.Option("--reason", help="Why, recorded in the splitter's state file.")] = "",
) -> None:
    """Send every caller back to the old endpoint in one step (never gated), and say how it was done."""
    from lepton_cdk.cutover.errors import CutoverError
    from lepton_cdk.cutover.steps import rollback

    p = _load(plan)
    applied = rollback(p, reason=reason or "lepton cutover rollback")
    typer.echo(f"rolled back to 0% (every caller on {p.old.name}, {p.old.url}): {applied.how}")
    if not applied.confirmed and p.traffic.via == "splitter":
        raise CutoverError(f"the rollback is written to {p.traffic.state} but not confirmed by a running splitter; start "
                           f"`lepton cutover split {plan}` or check traffic.listen")
