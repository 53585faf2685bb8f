"""Running a planned spec: each run's plan (``--dry-run``) or its evaluation, one failure never stopping the rest."""

from __future__ import annotations

from echobench.console import console
from echobench.errors import UserError
from echobench.reproduce.planning import Plan
from echobench.runner import execute


def attach_plans(plan: Plan) -> None:
    """Each runnable run's plan from :func:`echobench.plan.plan_run` (configs and label tables only). A run whose
    plan is refused, or lists problems the run would stop at (clips longer than the videos, ...), becomes not
    runnable with that reason; its plan is kept, so the reader sees the rest of it."""
    from echobench.plan import plan_run

    for run in plan.runs:
        if run.reason is not None:
            continue
        try:
            run.plan = plan_run(
                run.plugin,
                run.protocol,
                dataset=run.dataset,
                data_root=run.root,
                task=run.task,
                sets=list(run.sets),
                profile=run.profile,
            )
        except UserError as exc:
            run.reason = str(exc)
            continue
        problems = run.plan.get("problems") or []
        if problems:
            more = f" (and {len(problems) - 1} more in the plan)" if len(problems) > 1 else ""
            run.reason = f"the run would stop: {problems[0]}{more}"


def execute_runs(plan: Plan, *, force: bool = False) -> None:
    """Evaluate every runnable run in checkpoint order (reusing checkpoints, embeddings and result files as
    ``echobench run`` does); a :class:`UserError` becomes that run's failure and the next run starts."""
    runnable = [run for run in plan.runs if run.reason is None and run.resolved is not None]
    for number, run in enumerate(runnable, start=1):
        console.print(
            f"[bold]reproduce {plan.spec.name} [{number}/{len(runnable)}][/] {run.plugin} · {run.protocol} · "
            f"{run.task} · {run.dataset}",
            highlight=False,
        )
        assert run.resolved is not None
        try:
            outcome = execute(run.resolved, force=force)
        except UserError as exc:
            run.failure = str(exc)
            console.print(f"[bold yellow]row failed:[/] {exc}", highlight=False, soft_wrap=True)
            continue
        run.record = outcome.record
        run.result_path = str(outcome.result_path)
