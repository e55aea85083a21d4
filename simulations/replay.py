"""``replay.json``: every parameter of one run, with its concrete fault plan, as plain JSON.

A run is fully described by its :class:`~simulations.runner.SimConfig` with the fault plan made
concrete (the crash, churn and hostile times that ``--crash`` / ``--hostile`` only draw, and the
windows that have no flag). :func:`spec_of` turns a configuration into such a spec,
:func:`config_of` turns it back; ``python -m simulations run --seed S --plan DIR/replay.json``
replays the run and gets the same trace hash. The sweep (:mod:`simulations.sweep`) ships the same
specs to its workers, so a failing seed is replayed by the same command.

Planted bugs (:class:`~simulations.nodes.Hooks`) are code, not data: a spec names them by import
path (``"hooks": "package.module:NAME"``, NAME a ``Hooks`` or a function returning one), which
is how a sweep's worker and a replay both find them.

A ``report.json`` carries the same spec under ``"run"``, so ``--plan report.json`` replays that
very run too. A file that holds only a fault plan (``{"faults": {...}}`` or the plan itself) is
applied with the other flags of the command line; a report without a ``"run"`` spec is refused
rather than silently mixed with today's defaults.
"""

from __future__ import annotations

import importlib
import json
import shlex
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from p2pauction.errors import UsageError
from simulations.faults import FaultOptions, FaultPlan
from simulations.network import NetParams
from simulations.runner import SimConfig

FORMAT = "p2pauction-sim-run"
VERSION = 1
FILE_NAME = "replay.json"

# SimConfig fields a spec carries as plain values (the rest: net, faults, hooks, handled apart;
# progress, factory and replay say how a run is shown or driven, not what it does)
_PLAIN = ("seed", "nodes", "scenario", "events", "duration", "bound", "probe", "warmup", "join_spread",
          "dissemination", "core_overrides", "verifier_cache", "decode_cache", "trace")
_KEYS = frozenset(("format", "version", "net", "faults", "hooks") + _PLAIN)


def spec_of(cfg: SimConfig, plan: FaultPlan | None = None, hooks: str | None = None) -> dict[str, Any]:
    """The JSON spec of ``cfg``; ``plan`` (the concrete plan of a built run) replaces its options."""
    faults = plan if plan is not None else cfg.faults
    out: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    for name in _PLAIN:
        out[name] = getattr(cfg, name)
    net = asdict(cfg.net)
    net["latency"] = list(cfg.net.latency)
    out["net"] = net
    if isinstance(faults, FaultPlan):
        out["faults"] = {"plan": faults.to_json()}
    else:
        out["faults"] = {"options": asdict(faults)}
    out["hooks"] = hooks
    return out


def config_of(spec: dict[str, Any]) -> SimConfig:
    """The SimConfig a spec describes (hooks imported); UsageError saying what is wrong otherwise."""
    if spec.get("format") != FORMAT:
        raise UsageError(f"not a simulator run spec (format {spec.get('format')!r}, expected {FORMAT!r})")
    if spec.get("version") != VERSION:
        raise UsageError(f"run spec version {spec.get('version')!r}: this simulator reads version {VERSION}; "
                         "replay it with the version of the project that wrote it")
    unknown = sorted(set(spec) - _KEYS)
    missing = sorted(_KEYS - set(spec))
    if unknown or missing:
        raise UsageError(f"run spec has unknown keys {unknown} / lacks keys {missing}: "
                         "it was written by another version of the simulator")
    try:
        net_fields = dict(spec["net"])
        net_fields["latency"] = tuple(net_fields["latency"])
        net = NetParams(**net_fields)
        faults = _faults_of(spec["faults"])
        plain = {name: spec[name] for name in _PLAIN}
        plain["core_overrides"] = dict(plain["core_overrides"])
        return SimConfig(net=net, faults=faults, hooks=load_hooks(spec["hooks"]), **plain)
    except (TypeError, ValueError, KeyError) as exc:
        raise UsageError(f"run spec is malformed ({type(exc).__name__}: {exc})") from exc


def _faults_of(d: dict[str, Any]) -> FaultOptions | FaultPlan:
    if "plan" in d:
        return FaultPlan.from_json(d["plan"])
    o = dict(d["options"])
    names = {f.name for f in fields(FaultOptions)}
    if set(o) - names:
        raise ValueError(f"unknown fault options {sorted(set(o) - names)}")
    o["partitions"] = [tuple(p) for p in o.get("partitions", [])]
    for k in ("crash_window", "crash_down", "churn_window", "hostile_window", "storage_window"):
        if k in o:
            o[k] = tuple(o[k])
    return FaultOptions(**o)


def load_hooks(ref: str | None) -> Any:
    """Import ``package.module:NAME`` (a Hooks, or a function returning one); None stays None."""
    if ref is None:
        return None
    module, _, name = ref.partition(":")
    if not module or not name:
        raise UsageError(f"hooks {ref!r}: expected package.module:NAME")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"hooks {ref!r} cannot be imported ({exc}); run from the directory that holds "
                         f"{module.split('.')[0]}/ or put it on PYTHONPATH") from exc
    from simulations.nodes import Hooks

    return obj if isinstance(obj, Hooks) else obj()


def write(directory: Path, spec: dict[str, Any]) -> Path:
    """Write ``directory/replay.json`` (creating the directory) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAME
    path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return path


def command(seed: int | str, path: Path) -> str:
    """The one shell command that replays the run saved at ``path`` (``--seed`` always spelled out)."""
    return f"python -m simulations run --seed {shlex.quote(str(seed))} --plan {shlex.quote(str(path))}"


def read_plan_file(path: Path) -> dict[str, Any] | FaultPlan:
    """What ``--plan FILE`` holds: a full run spec (replay.json, or a report's ``"run"``), or a bare
    fault plan to apply with the command line's other flags. Refuses anything that would silently
    replay a different run."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"--plan {path}: cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise UsageError(f"--plan {path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--plan {path}: expected a JSON object (replay.json, report.json or a fault plan)")
    if data.get("format") == FORMAT:
        return data
    if isinstance(data.get("run"), dict):
        run: dict[str, Any] = data["run"]
        return run
    if "seed" in data or "nodes" in data:
        raise UsageError(f"--plan {path}: this report has no \"run\" spec (an older simulator wrote it), so "
                         "its fault plan alone would replay a different run; use the replay.json of that "
                         "run, or pass {\"faults\": ...} with every flag of the original command")
    faults = data.get("faults", data)
    try:
        return FaultPlan.from_json(faults)
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"--plan {path}: not a run spec nor a fault plan ({exc})") from exc
