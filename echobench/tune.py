"""``echobench tune``: an Optuna search over a method's (and the protocol's) settings, scored on validation only.

The search space is what the plugin declares — ``Config.search_space`` (a ClassVar mapping ``name`` or
``section.name`` to a range) or a field's ``metadata={"search": range}`` — with a ``--search`` YAML file overriding it
entry by entry (``null`` drops an entry). A range is ``{low, high}`` (ints when both bounds are ints; optional
``log: true``, ``step``) or ``{choices: [...]}`` / a plain list.

Each trial pretrains (or reuses) a checkpoint and runs the protocol with the test split replaced by the validation
split, so no test video is decoded, encoded or scored; the objective is the task's primary metric on validation.
``--test-best`` evaluates the best trial once, on test, as a normal ``echobench run``.

The study is Optuna's: a journal file under ``$ECHOBENCH_HOME/optuna`` by default, or any RDB URL (PostgreSQL for
workers on several machines). ``--trials N`` is per process: K processes on one study run K·N trials between them.
The study's user attribute ``echobench`` pins method, protocol, dataset, task, fixed overrides, search space,
direction, sampler, pruner and seed; a process whose request differs is refused before it writes anything.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from echobench.atomic import write_text_atomic
from echobench.config import SECTIONS, load_yaml, read_scalar
from echobench.console import console
from echobench.errors import UserError
from echobench.paths import echobench_home
from echobench.runner import Resolved, open_dataset, prepare, resolve, run_family
from echobench.tracking import start_run
from echobench.train import validation_listener

SAMPLER = "TPESampler"
PRUNER = "MedianPruner"
TUNE_EXPERIMENT = "echobench-tune"


@dataclass(frozen=True)
class Range:
    """One searched setting, ``section.name``: numeric ``low``..``high`` (int or float) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def probe(self) -> Any:
        """A value inside the range, to check the setting exists and takes this type before any trial runs."""
        return self.choices[0] if self.choices is not None else self.low

    def as_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


def parse_range(name: str, spec: Any, where: str) -> Range:
    """A range from its YAML/ClassVar form; empty or malformed ranges are a one-line :class:`UserError`."""
    section, dot, field = name.partition(".")
    if not dot:
        section, field = "method", name
    if section not in SECTIONS or not field:
        raise UserError(f"{where}: search key {name!r} must be NAME or SECTION.NAME with SECTION in {SECTIONS}")
    full = f"{section}.{field}"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise UserError(f"{where}: range of {full} must be {{low, high}} or {{choices: [...]}}, got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise UserError(f"{where}: range of {full} has unknown key {sorted(unknown)[0]!r}; use low, high, log, step")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}: {full} has an empty choice list; give at least two values")
        return Range(full, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if not numbers:
        raise UserError(f"{where}: {full} needs numeric low and high, got low={low!r} high={high!r}")
    if not low < high:
        raise UserError(f"{where}: {full} has an empty search range [{low}, {high}]; low must be below high")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and low <= 0:
        raise UserError(f"{where}: {full} is searched on a log scale, so low must be > 0 (got {low})")
    if step is not None and not (isinstance(step, int | float) and step > 0):
        raise UserError(f"{where}: {full} step must be a positive number, got {step!r}")
    return Range(full, low=low, high=high, log=log, step=step)


def declared_space(config_cls: type) -> dict[str, Range]:
    """The ranges a plugin's Config declares: field metadata ``search`` first, then the ``search_space`` ClassVar."""
    where = f"{config_cls.__name__} search space"
    space: dict[str, Range] = {}
    for field in dataclasses.fields(config_cls):
        if "search" in field.metadata:
            found = parse_range(field.name, field.metadata["search"], where)
            space[found.name] = found
    for name, spec in dict(getattr(config_cls, "search_space", None) or {}).items():
        found = parse_range(name, spec, where)
        space[found.name] = found
    return space


def search_space(config_cls: type, search_file: Path | None) -> dict[str, Range]:
    """The declared space with the ``--search`` file's entries replacing (or, when ``null``, removing) it."""
    space = declared_space(config_cls)
    if search_file is None:
        return space
    where = str(search_file)
    for name, spec in _flatten_search(load_yaml(search_file)).items():
        key = name if "." in name else f"method.{name}"
        if spec is None:
            space.pop(key, None)
        else:
            space[key] = parse_range(name, spec, where)
    return space


def _flatten_search(data: dict[str, Any]) -> dict[str, Any]:
    """``{method: {mask_ratio: R}}`` and ``{method.mask_ratio: R}`` both become ``{"method.mask_ratio": R}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict) and not (set(value) & {"low", "high", "choices"}):
            flat.update({f"{key}.{name}": spec for name, spec in value.items()})
        else:
            flat[key] = value
    return flat


def as_set(name: str, value: Any) -> str:
    """A ``--set`` string carrying ``value`` exactly (JSON is YAML)."""
    return f"{name}={json.dumps(value)}"


def open_storage(url: str | None) -> Any:
    """Optuna storage: ``None`` → the journal file under ``$ECHOBENCH_HOME``; a URL with ``://`` → an RDB storage
    (``postgresql://user@host:port/db``, ``sqlite:///file.db``); anything else → a journal file at that path."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url is None or "://" not in url:
        path = Path(url).expanduser() if url else echobench_home() / "optuna" / "studies.journal"
        if path.is_dir():
            raise UserError(f"--storage {path} is a folder; give a journal file path or an RDB URL")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise UserError(f"cannot open journal file {path}: {exc.strerror}; choose a writable --storage") from None
    from sqlalchemy.engine import make_url

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any malformed URL is the user's to fix
        raise UserError(f"--storage {url!r} is not a database URL; e.g. postgresql://user@host:5432/db") from None
    engine_kwargs = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else None
    try:
        return _rdb_storage(url, engine_kwargs)
    except ModuleNotFoundError as exc:
        raise UserError(f"--storage {shown}: database driver {exc.name!r} is not installed; pip install it") from None
    except Exception as exc:  # noqa: BLE001 - connection errors come from several drivers
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UserError(f"cannot reach Optuna storage {shown}: {reason}; check host, port, user and database") from None


def _rdb_storage(url: str, engine_kwargs: dict[str, Any] | None, attempts: int = 5) -> Any:
    """Optuna's RDB storage; workers starting together on a fresh database race to create its tables, and the
    loser's ``CREATE`` fails on a duplicate key, so it retries once the winner's schema exists."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, ProgrammingError):
            time.sleep(1 + attempt)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


@dataclass(frozen=True)
class StudySpec:
    """What a study is for; pinned as the study's ``echobench`` user attribute."""

    method: str
    protocol: str
    dataset: str
    data_root: str | None
    task: str
    profile: str
    overrides: tuple[str, ...]
    space: dict[str, dict[str, Any]]
    metric: str
    direction: str
    seed: int
    sampler: str = SAMPLER
    pruner: str = PRUNER

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def default_name(self) -> str:
        return f"{self.method}-{self.protocol}-{self.dataset}-{self.task}"


def check_pinned(study_name: str, pinned: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key, value in wanted.items():
        if pinned.get(key) != value:
            raise UserError(
                f"study {study_name!r} was created for {key} {pinned.get(key)!r}, this command has {value!r}; "
                "use another --study name or the study's settings"
            )


def open_study(storage: Any, name: str, spec: StudySpec) -> Any:
    """Create the study, or join it when its pinned spec matches; a mismatch writes nothing."""
    import optuna

    wanted = spec.as_dict()
    try:
        existing = storage.get_study_id_from_name(name)
    except KeyError:
        existing = None
    if existing is not None:
        pinned = storage.get_study_user_attrs(existing).get("echobench")
        if pinned is None:
            raise UserError(f"study {name!r} in this storage was not created by echobench tune; use another --study")
        check_pinned(name, pinned, wanted)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=spec.direction,
        sampler=sampler_for(spec.seed, 0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        load_if_exists=True,
    )
    pinned = study.user_attrs.get("echobench")
    if pinned is None:
        study.set_user_attr("echobench", wanted)
    else:
        check_pinned(name, pinned, wanted)
    return study


def sampler_for(seed: int, trial_number: int) -> Any:
    """TPE seeded by ``(seed, trial number)``: concurrent workers draw different startup points, and trial ``n``'s
    draws depend only on the seed and the trials finished before it."""
    import numpy as np
    import optuna

    derived = int(np.random.SeedSequence([seed, trial_number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=derived)


@contextmanager
def pruning_reports(trial: Any, higher_is_better: bool) -> Iterator[None]:
    """Feed a model-selecting training loop's validation scores to ``trial`` (in the metric's own units) and stop
    the trial when the pruner says so. Protocols without intermediate validation (kNN, probes) report nothing."""
    import optuna

    def report(step: int, signed_score: float) -> None:
        trial.report(signed_score if higher_is_better else -signed_score, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    token = validation_listener.set(report)
    try:
        yield
    finally:
        validation_listener.reset(token)


@dataclass
class TuneRequest:
    method: str
    protocol: str
    trials: int
    task: str | None = None
    dataset: str | None = None
    data_root: str | None = None
    storage: str | None = None
    study: str | None = None
    search: Path | None = None
    sets: list[str] = dataclasses.field(default_factory=list)
    profile: str = "quick"
    seed: int = 0
    test_best: bool = False
    out: Path | None = None


@dataclass
class TuneOutcome:
    study_name: str
    finished: int
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None
    test_result: Path | None


def tune(request: TuneRequest) -> TuneOutcome:
    if request.trials < 1:
        raise UserError(f"--trials must be at least 1, got {request.trials}")
    base = _resolve(request, request.sets)
    space = search_space(base.method_cls.Config, request.search)
    if not space:
        raise UserError(
            f"nothing to search: method {request.method!r} declares no search_space; pass --search FILE "
            "(e.g. 'method.mask_ratio: {low: 0.75, high: 0.95}')"
        )
    _resolve(request, [*request.sets, *(as_set(r.name, r.probe()) for r in space.values())])
    dataset = open_dataset(base.data)
    base.task.targets(dataset.table, dataset.name)
    spec = StudySpec(
        method=base.method_cls.name,
        protocol=base.protocol.name,
        dataset=dataset.name,
        data_root=base.data.root,
        task=base.task.name,
        profile=request.profile,
        overrides=tuple(request.sets),
        space={name: r.as_dict() for name, r in sorted(space.items())},
        metric=base.task.primary_metric,
        direction="maximize" if base.task.higher_is_better else "minimize",
        seed=request.seed,
    )
    name = request.study or spec.default_name
    study = open_study(open_storage(request.storage), name, spec)
    params = {"study": name, "trials": request.trials, "spec": spec.as_dict()}
    tags = {"echobench.kind": "tune", "echobench.study": name, "echobench.method": spec.method}
    with start_run(TUNE_EXPERIMENT, name, params, tags) as parent:
        objective = _objective(request, study, space, spec, parent.run_id)
        study.optimize(objective, n_trials=request.trials, catch=(UserError,))
    return _finish(request, study, name, spec)


def _resolve(request: TuneRequest, sets: list[str]) -> Resolved:
    return resolve(
        request.method,
        request.protocol,
        dataset=request.dataset,
        data_root=request.data_root,
        task=request.task,
        sets=sets,
        profile=request.profile,
    )


def _objective(
    request: TuneRequest, study: Any, space: dict[str, Range], spec: StudySpec, parent_run_id: str
) -> Callable[[Any], float]:
    def objective(trial: Any) -> float:
        study.sampler = sampler_for(spec.seed, trial.number)
        values = {name: r.suggest(trial) for name, r in space.items()}
        resolved = _resolve(request, [*request.sets, *(as_set(k, v) for k, v in values.items())])
        tags = {
            "mlflow.parentRunId": parent_run_id,
            "echobench.kind": "tune-trial",
            "echobench.study": spec.default_name if request.study is None else request.study,
            "echobench.trial": str(trial.number),
        }
        with start_run(TUNE_EXPERIMENT, f"trial-{trial.number}", {"params": values}, tags) as run:
            context = prepare(resolved)
            # The protocol sees validation in place of test, so tuning never reads a test video.
            validation_only = context.with_splits(test=context.table("val"))
            with pruning_reports(trial, spec.direction == "maximize"):
                result = run_family(resolved, validation_only)
            value = result.val_metrics.get(spec.metric)
            if value is None or not math.isfinite(value):
                raise UserError(
                    f"protocol {spec.protocol} gave no finite validation {spec.metric} (got {value}); tune with a "
                    "protocol that selects on validation (e.g. knn with variant=standard, linear, finetune)"
                )
            run.log_metrics({f"val_{k}": v for k, v in result.val_metrics.items() if math.isfinite(v)})
            run.set_tags({"echobench.checkpoint_hash": context.pretrained.checkpoint_hash})
            trial.set_user_attr("mlflow_run_id", run.run_id)
            trial.set_user_attr("checkpoint_hash", context.pretrained.checkpoint_hash)
        console.print(f"trial {trial.number}: validation {spec.metric} {value:.4f} with {values}")
        return float(value)

    return objective


def _finish(request: TuneRequest, study: Any, name: str, spec: StudySpec) -> TuneOutcome:
    from optuna.trial import TrialState

    finished = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not finished:
        return TuneOutcome(name, 0, None, None, {}, None, None)
    best = study.best_trial
    path = request.out or echobench_home() / "tune" / f"{name}.best.yaml"
    write_text_atomic(path, best_config_yaml(request, spec, name, best.number, best.value, best.params))
    test_result = None
    if request.test_best:
        from echobench.runner import execute

        sets = [*request.sets, *(as_set(k, v) for k, v in best.params.items())]
        test_result = execute(_resolve(request, sets)).result_path
        study.set_user_attr("test_evaluated_trial", best.number)
    return TuneOutcome(name, len(finished), best.number, best.value, dict(best.params), path, test_result)


def best_config_yaml(
    request: TuneRequest, spec: StudySpec, study: str, number: int, value: float, params: dict[str, Any]
) -> str:
    """The fixed overrides plus the best trial's values, by section: ``echobench run --config FILE`` input."""
    sections: dict[str, dict[str, Any]] = {}
    for item in [*request.sets, *(as_set(k, v) for k, v in params.items())]:
        key, _, raw = item.partition("=")
        section, _, field = key.strip().partition(".")
        sections.setdefault(section, {})[field] = read_scalar(raw)
    if request.dataset is not None:
        sections.setdefault("data", {}).setdefault("dataset", request.dataset)
    if request.data_root is not None:
        sections.setdefault("data", {}).setdefault("root", request.data_root)
    command = f"echobench run --method {spec.method} --protocol {spec.protocol} --task {spec.task}"
    header = (
        f"# best trial {number} of Optuna study {study!r}: validation {spec.metric} = {value:.6g}\n"
        f"# reproduce and test once: {command} --profile {spec.profile} --config THIS_FILE\n"
    )
    return header + yaml.safe_dump(sections, sort_keys=True)
