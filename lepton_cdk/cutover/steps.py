"""Check, advance, run and roll back a cutover plan.

A step's gates are measured while traffic is *at* that step, and must pass
before the cutover moves on to the next one: ``check --to 10`` evaluates the
gates of the step before 10% (say 1%). Moving back is a rollback and is
never gated.

Where the weight lives:

- ``via: splitter``: the embedded splitter's state file. ``advance`` and
  ``run`` write it; ``rollback`` writes 0 and waits until the running
  splitter reports the new revision.
- ``via: dns``: ``LEPTON_CUTOVER_WEIGHT`` in a settings file the stack is
  deployed with (``TrafficSplit``). A step is a pull request changing that
  line: ``cdktf diff`` shows only the weight, CI runs ``lepton cutover check``
  (which reads the proposed weight from the file) before it may merge, and
  ``rollback`` rewrites the line to 0 and prints the deploy command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lepton_cdk.contract.manifest import write_json_atomic

from .errors import CutoverError, GateFailedError, PlanError
from .gates import StepCheck, evaluate_step, now_iso
from .plan import WEIGHT_SETTING, CutoverPlan, Step
from .state import read_state, read_weight_setting, write_state, write_weight_setting

REPORT_KIND = "lepton-cutover-report"
ROLLBACK_CONFIRM_S = 5.0


def current_percent(plan: CutoverPlan) -> int:
    """The weight in force: the splitter's state file, or the settings file's ``LEPTON_CUTOVER_WEIGHT`` (0 when absent)."""
    if plan.traffic.via == "splitter":
        state = read_state(plan.traffic.state)
        return state.weight_percent if state else 0
    value = read_weight_setting(plan.traffic.settings)
    return 0 if value is None else value


def _index(plan: CutoverPlan, percent: int) -> int:
    for i, step in enumerate(plan.steps):
        if step.percent == percent:
            return i
    raise PlanError(f"{plan.path}: the traffic is at {percent}%, which is not a step of this plan ({plan.steps_text()}); "
                    "`lepton cutover rollback` returns it to 0%")


def gated_step(plan: CutoverPlan, to_percent: int) -> Step | None:
    """The step whose gates must pass before moving to ``to_percent`` (the one before it); None for the first step."""
    i = plan.steps.index(plan.step(to_percent))  # plan.step names the plan's steps when there is none
    return plan.steps[i - 1] if i > 0 else None


def check(plan: CutoverPlan, to_percent: int | None = None, *, sleep: Callable[[float], None] = time.sleep,
          window_s: float | None = None) -> tuple[int, StepCheck | None]:
    """Measure the gates that guard the move to ``to_percent``; returns ``(to_percent, the check or None when ungated)``.

    Default target: the next step after the weight in force (splitter), or
    the weight the settings file proposes (dns, as in a pull request).
    """
    if to_percent is None:
        if plan.traffic.via == "dns":
            to_percent = current_percent(plan)
        else:
            nxt = plan.next_step(current_percent(plan))
            if nxt is None:
                raise CutoverError(f"{plan.path}: the traffic is already at {plan.steps[-1].percent}%: the cutover is complete")
            to_percent = nxt.percent
    step = gated_step(plan, to_percent)
    if step is None:
        return to_percent, None
    result = evaluate_step(plan, step, sleep=sleep, window_s=window_s)
    result.to_percent = to_percent
    return to_percent, result


@dataclass
class Applied:
    """A weight put in force (or written for the deploy to put in force), and how, in words."""

    percent: int
    how: str
    confirmed: bool = True


def apply_percent(plan: CutoverPlan, percent: int, *, by: str, note: str = "", confirm_s: float = ROLLBACK_CONFIRM_S) -> Applied:
    """Put ``percent`` in force: the splitter's state file (waiting for the splitter to confirm), or the settings file."""
    if plan.traffic.via == "dns":
        write_weight_setting(plan.traffic.settings, percent)
        t = plan.traffic
        return Applied(percent, f"wrote {WEIGHT_SETTING}={percent} to {t.settings}; apply it with `set -a; . {t.settings}; set +a; "
                                f"cdktf deploy {t.stack_name}` (or merge the pull request carrying that line: `cdktf diff` shows only "
                                f"the weight); callers follow within the record's TTL", confirmed=False)
    state = write_state(plan.traffic.state, percent, by=by, note=note, updated_at=now_iso())
    url = plan.traffic.listen_url
    if url is None:
        return Applied(percent, f"wrote {percent}% to {plan.traffic.state}; the splitter follows it when it runs", confirmed=False)
    from .splitter import splitter_state

    deadline = time.monotonic() + confirm_s
    while True:
        seen = splitter_state(url)
        if seen is not None and seen.get("revision") == state.revision:
            return Applied(percent, f"the splitter at {url} now sends {percent}% to {plan.new.name} ({plan.new.url}) and "
                                    f"{100 - percent}% to {plan.old.name} ({plan.old.url}) (state {plan.traffic.state}, revision "
                                    f"{state.revision})")
        if time.monotonic() > deadline:
            return Applied(percent, f"wrote {percent}% to {plan.traffic.state}, but the splitter at {url} did not confirm within "
                                    f"{confirm_s:g}s (is `lepton cutover split` running?); it follows the file when it runs",
                           confirmed=False)
        time.sleep(0.1)


def advance(plan: CutoverPlan, to_percent: int | None = None, *, sleep: Callable[[float], None] = time.sleep) -> tuple[StepCheck | None, Applied]:
    """Check the gates of the step in force and, when they pass, move to the next step (one step at a time)."""
    current = current_percent(plan)
    i = _index(plan, current)
    if i == len(plan.steps) - 1:
        raise CutoverError(f"{plan.path}: the traffic is already at {current}%: the cutover is complete")
    nxt = plan.steps[i + 1]
    if to_percent is not None and to_percent != nxt.percent:
        if to_percent < current:
            raise CutoverError(f"going from {current}% back to {to_percent}% is a rollback: run `lepton cutover rollback`")
        raise CutoverError(f"the next step after {current}% is {nxt.percent}%, not {to_percent}%: a cutover moves one step at a time")
    _, result = check(plan, nxt.percent, sleep=sleep)
    if result is not None and not result.passed:
        raise result.failure()
    if nxt is plan.steps[-1] and plan.data_sync is not None:
        from .datasync import run_data_sync

        run_data_sync(plan.data_sync)
    return result, apply_percent(plan, nxt.percent, by="advance")


def rollback(plan: CutoverPlan, *, reason: str = "") -> Applied:
    """Return every caller to the old endpoint (weight 0), in one step, ungated."""
    return apply_percent(plan, 0, by="rollback", note=reason)


@dataclass
class CutoverReport:
    """What ``lepton cutover run`` did: each step's gates with their numbers, the data sync, and how it ended."""

    plan: CutoverPlan
    started_at: str = field(default_factory=now_iso)
    finished_at: str = ""
    started_percent: int = 0
    final_percent: int = 0
    outcome: str = "running"  # completed | rolled_back | stopped
    reason: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    data_sync: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON."""
        return {"kind": REPORT_KIND, "plan": str(self.plan.path), "via": self.plan.traffic.via,
                "old": {"name": self.plan.old.name, "url": self.plan.old.url}, "new": {"name": self.plan.new.name, "url": self.plan.new.url},
                "steps_planned": list(self.plan.percents), "window_s": self.plan.window_s, "started_at": self.started_at,
                "finished_at": self.finished_at, "started_percent": self.started_percent, "final_percent": self.final_percent,
                "outcome": self.outcome, "reason": self.reason, "steps": self.steps, "data_sync": self.data_sync,
                "rollback": self.rollback}


def run(plan: CutoverPlan, *, report_path: Path | None = None, progress: Callable[[str], None] = lambda line: None,
        sleep: Callable[[float], None] = time.sleep) -> CutoverReport:
    """Walk the plan from the weight in force to 100%, step by step: hold, measure the gates, move on.

    A failed gate rolls every caller back to the old endpoint and ends the run
    (``outcome`` ``rolled_back``); a failed final data sync stops it where it
    is (``stopped``: the traffic stays at the last step taken). The report is
    written after every step when ``report_path`` is given.
    """
    if plan.traffic.via != "splitter":
        raise CutoverError(f"{plan.path}: with traffic.via: dns each step is a pull request changing {WEIGHT_SETTING} (CI runs "
                           "`lepton cutover check`); `lepton cutover advance` writes the next one")
    report = CutoverReport(plan=plan)
    current = current_percent(plan)
    report.started_percent = report.final_percent = current
    i = _index(plan, current)

    def save() -> None:
        if report_path is not None:
            write_json_atomic(report.to_dict(), report_path)

    save()
    while i < len(plan.steps) - 1:
        step, nxt = plan.steps[i], plan.steps[i + 1]
        if step.hold_s:
            progress(f"holding at {step.label} for {step.hold_s:g}s")
            sleep(step.hold_s)
        progress(f"at {step.label}: measuring {len(step.gates)} gate(s) over {plan.window_s:g}s before moving to {nxt.label}")
        result = evaluate_step(plan, step, sleep=sleep)
        result.to_percent = nxt.percent
        entry: dict[str, Any] = {**result.to_dict(), "moved_to": None}
        report.steps.append(entry)
        for gate in result.gates:
            progress(f"  {'pass' if gate.passed else 'FAIL'} {gate.name}: {gate.detail}")
        if not result.passed:
            failure = result.failure()
            applied = rollback(plan, reason=str(failure))
            report.rollback = {"at": now_iso(), "from_percent": step.percent, "gate": failure.gate, "how": applied.how,
                               "confirmed": applied.confirmed}
            report.outcome, report.reason, report.final_percent = "rolled_back", str(failure), 0
            progress(f"rolled back: {applied.how}")
            break
        if nxt is plan.steps[-1] and plan.data_sync is not None:
            from .datasync import run_data_sync

            progress(f"final incremental data sync before {nxt.label}: {plan.data_sync.src} -> {plan.data_sync.dst}")
            try:
                report.data_sync = run_data_sync(plan.data_sync)
            except Exception as exc:  # the sync's own errors are one line; anything else is reported the same way
                report.data_sync = {"ok": False, "error": str(exc)}
                report.outcome = "stopped"
                report.reason = f"the final data sync failed ({exc}); the traffic stays at {step.label}: fix it and run again"
                break
        applied = apply_percent(plan, nxt.percent, by="run")
        entry["moved_to"], entry["how"], entry["confirmed"] = nxt.percent, applied.how, applied.confirmed
        report.final_percent = nxt.percent
        progress(f"moved to {nxt.label}: {applied.how}")
        if not applied.confirmed:
            report.outcome, report.reason = "stopped", applied.how
            break
        i += 1
        save()
    else:
        report.outcome = "completed"
    report.finished_at = now_iso()
    save()
    return report


__all__ = ["Applied", "CutoverReport", "GateFailedError", "advance", "apply_percent", "check", "current_percent", "gated_step",
           "rollback", "run"]
