"""The benchmark: what a tenant-like stream costs, against the cost of merely parsing it.

The reference is `orjson.loads` of every body (gunzip included where a body is gzip): any engine that
parses everything pays at least that. Our full path is measured twice over the same bodies, with the
prefilter off and on, and the two must produce identical alerts, or the run fails. The handler also
counts every body of a batch for source health (a census by tenant, workload and operation that the
prefilter cannot spare), so that census is measured on its own and, with the prefiltered path, as the
handler's whole per-batch CPU cost short of storage and notifications. Memory is measured
in a fresh process that handles one batch of 10 000 records, so what the benchmark itself holds does
not count; the import time of the function app is what a cold start pays before the first batch.

Everything runs on one core (the process pins itself to one CPU), single-threaded, as a Functions
worker does. Times are the best of several repeats, which on a shared machine is the least noisy
estimate of what the code costs.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from detection.engine import Detection, detect
from detection.samplegen import Body, generate_bodies
from detection.sources import Limits, decompress

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGET_VS_ORJSON = 3.0
TARGET_PEAK_RSS_MB = 150.0
RSS_BATCH_RECORDS = 10_000
BATCH_TIME = datetime(2026, 12, 1, tzinfo=UTC)  # the health deltas' stamp; any fixed instant will do


class BenchFailure(RuntimeError):
    """The run cannot stand: the two paths disagree, or a measurement could not be made."""


@dataclass(frozen=True)
class Timing:
    seconds: float
    records: int

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


def figure(label: str, timing: Timing, note: str = "") -> str:
    """One aligned line of the report: what was timed, its milliseconds and records per second."""
    line = f"{label:<45} {timing.seconds * 1000:8.1f} ms {timing.per_second:12,.0f} records/s"
    return f"{line}  {note}" if note else line


@contextmanager
def one_core() -> Iterator[int | None]:
    """Run on a single CPU so that the figures are one core's; yields it (None where unsupported).
    The previous affinity comes back afterwards, so a caller in the same process is not left pinned."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def best_of_interleaved(repeat: int, *funcs: Callable[[], Any]) -> list[tuple[float, Any]]:
    """The best time of each function over `repeat` rounds, taking turns, so that a burst of load from
    elsewhere on the machine falls on all of them alike rather than on whichever ran during it."""
    best: list[tuple[float, Any]] = [(float("inf"), None)] * len(funcs)
    for _ in range(max(1, repeat)):
        for position, func in enumerate(funcs):
            seconds, result = timed(func)
            if seconds < best[position][0]:
                best[position] = (seconds, result)
    return best


def parse_everything(bodies: Sequence[Body], limits: Limits) -> int:
    """The baseline: gunzip where needed and orjson.loads every JSON document (an NDJSON line each)."""
    documents = 0
    for body in bodies:
        data = decompress(body.data, limits)
        if body.kind.endswith("ndjson"):
            for line in data.split(b"\n"):
                if line:
                    orjson.loads(line)
                    documents += 1
        else:
            orjson.loads(data)
            documents += 1
    return documents


def alert_signature(detection: Detection) -> list[tuple[str, dict[str, Any]]]:
    """Everything the caller receives, in order, as comparable data."""
    return [(kind, alert.to_dict()) for kind, alerts in
            (("alert", detection.alerts), ("overflow", detection.overflow), ("excepted", detection.excepted))
            for alert in alerts]


def compare_paths(off: Detection, on: Detection) -> None:
    """Raise BenchFailure unless both paths gave the same alerts and the same rule counts."""
    if alert_signature(off) != alert_signature(on):
        raise BenchFailure(
            f"the prefilter changed the alerts: {len(off.alerts)}/{len(off.overflow)}/{len(off.excepted)} "
            f"(alerts/overflow/excepted) without it, {len(on.alerts)}/{len(on.overflow)}/{len(on.excepted)} "
            f"with it")
    for name in ("matches", "overflow", "excepted", "duplicates"):
        if getattr(off.stats, name) != getattr(on.stats, name):
            raise BenchFailure(f"the prefilter changed the {name} counts: "
                               f"{getattr(off.stats, name)} without it, {getattr(on.stats, name)} with it")


# ---- measurements in fresh processes ----

def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the current program image, while
    ru_maxrss survives exec and so can report the parent that spawned us; use it only elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child_peak_rss(records: int, seed: int, prefilter: bool, rules_dir: str) -> None:
    """Run in a fresh interpreter: generate one batch, handle it, print the peak RSS as JSON."""
    from detection.rules import load_rules
    from detection.settings import Settings

    settings = Settings.from_env()
    rules = load_rules(rules_dir).rules
    after_import = peak_rss_mb()
    bodies = [body.data for body in generate_bodies(records, seed)]
    result = detect(bodies, rules, settings, prefilter=prefilter)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "after_import_mb": after_import,
                      "alerts": len(result.alerts)}))


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        env=env, check=False)


def measure_peak_rss(records: int, seed: int, prefilter: bool, rules_dir: Path) -> dict[str, Any]:
    done = _python("from detection.bench import child_peak_rss; "
                   f"child_peak_rss({records}, {seed}, {prefilter}, {str(rules_dir)!r})")
    if done.returncode != 0:
        raise BenchFailure(f"the memory measurement failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# The Functions host always gives the app a storage account (AzureWebJobsStorage or its identity-based
# forms), and the app checks at import that it has one. Outside the host the local emulator's well-known
# location stands in; importing only checks the setting, nothing connects.
HOST_STORAGE_SETTING = "AzureWebJobsStorage"
LOCAL_STORAGE = "UseDevelopmentStorage=true"


def import_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment the function app is imported with: this one, plus the storage account the host
    would provide when no form of it is set."""
    env = dict(environ)
    if not any(name.startswith(HOST_STORAGE_SETTING) for name in env):
        env[HOST_STORAGE_SETTING] = LOCAL_STORAGE
    return env


def measure_import_time() -> dict[str, Any]:
    """Seconds to import the function app in a fresh interpreter (the engine, until the app exists)."""
    module = "function_app" if (PROJECT_ROOT / "function_app.py").exists() else "detection.engine"
    code = (f"import time; start = time.perf_counter(); import {module}; "
            f"print(time.perf_counter() - start)")
    done = _python(code, import_environment(dict(os.environ)))
    if done.returncode != 0:
        return {"module": module, "import_ms": None, "error": done.stderr.strip().splitlines()[-1:]}
    return {"module": module, "import_ms": round(float(done.stdout.strip().splitlines()[-1]) * 1000, 1)}


# ---- the run ----

def run(records: int, seed: int, repeat: int, settings: Any, rules: Sequence[Any], rules_dir: Path,
        say: Callable[[str], None], *, batch_records: int = RSS_BATCH_RECORDS) -> dict[str, Any]:
    """The whole benchmark; `say` gets the human-readable lines, the figures are returned."""
    with one_core() as cpu:
        return _run(records, seed, repeat, settings, rules, rules_dir, say, batch_records, cpu)


def _run(records: int, seed: int, repeat: int, settings: Any, rules: Sequence[Any], rules_dir: Path,
         say: Callable[[str], None], batch_records: int, cpu: int | None) -> dict[str, Any]:
    limits = Limits.from_settings(settings)
    started = time.perf_counter()

    # The fresh processes first, while this one is still small.
    rss_on = measure_peak_rss(batch_records, seed, True, rules_dir)
    rss_off = measure_peak_rss(batch_records, seed, False, rules_dir)
    peak = max(rss_on["peak_rss_mb"], rss_off["peak_rss_mb"])
    imported = measure_import_time()

    gen_seconds, bodies = timed(lambda: generate_bodies(records, seed))
    payloads = [body.data for body in bodies]
    total_bytes = sum(len(p) for p in payloads)
    kinds = Counter(body.kind for body in bodies)
    say(f"stream: {records} records in {len(bodies)} bodies, {total_bytes / 1e6:.1f} MB, seed {seed}, "
        f"generated in {gen_seconds:.1f} s")
    say("  bodies: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    say(f"rules: {len(rules)}; one core{f' (cpu {cpu})' if cpu is not None else ''}; "
        f"best of {repeat} runs")

    # Imported here, not at the top: the fresh process that measures memory imports this module, and
    # the health routine's storage clients would count there although that batch never uses them.
    from detection.health import inputs_of
    from detection.health.aggregate import census_of_bodies
    from detection.health.routine import batch_delta

    inputs = inputs_of(rules)

    def with_health() -> Detection:
        """What the handler computes per batch before it writes anything: detection, then the health
        counters delta of the same bodies."""
        found = detect(payloads, rules, settings, prefilter=True)
        batch_delta(payloads, settings=settings, now=BATCH_TIME, inputs=inputs)
        return found

    off_seconds, off = timed(lambda: detect(payloads, rules, settings, prefilter=False))
    (base_seconds, _), (on_seconds, on), (census_seconds, _), (health_seconds, _) = best_of_interleaved(
        repeat, lambda: parse_everything(bodies, limits),
        lambda: detect(payloads, rules, settings, prefilter=True),
        lambda: census_of_bodies(payloads, limits), with_health)
    base = Timing(base_seconds, records)
    slow = Timing(off_seconds, records)
    say(figure("orjson.loads of every body (gunzip included):", base))
    say(figure("full path, prefilter off:", slow, f"({slow.per_second / base.per_second:.2f}x orjson)"))

    fast = Timing(on_seconds, records)
    vs_orjson = fast.per_second / base.per_second
    say(figure("full path, prefilter on:", fast, f"({vs_orjson:.2f}x orjson, "
               f"{fast.per_second / slow.per_second:.0f}x prefilter off)"))
    say(f"  bodies parsed {on.stats.bodies_parsed} of {on.stats.bodies}, "
        f"records mapped {on.stats.records_mapped} of {records}")
    census = Timing(census_seconds, records)
    say(figure("health census of every body:", census,
               f"({census.per_second / base.per_second:.2f}x orjson)"))
    health = Timing(health_seconds, records)
    with_health_vs_orjson = health.per_second / base.per_second
    say(figure("prefilter on + health counters (per batch):", health,
               f"({with_health_vs_orjson:.2f}x orjson; the handler's CPU short of storage)"))

    compare_paths(off, on)
    say(f"alerts: {len(on.alerts)} (+{len(on.overflow)} beyond max_signals, {len(on.excepted)} excepted), "
        f"identical on both paths")
    say(f"peak RSS of one batch of {batch_records} records in a fresh process: "
        f"{rss_on['peak_rss_mb']:.1f} MB prefilter on, {rss_off['peak_rss_mb']:.1f} MB off "
        f"({rss_on['after_import_mb']:.1f} MB after imports)")
    if imported["import_ms"] is None:
        say(f"import {imported['module']}: failed: {imported.get('error')}")
    else:
        say(f"import {imported['module']}: {imported['import_ms']:.0f} ms (fresh interpreter)")

    met = vs_orjson >= TARGET_VS_ORJSON and peak <= TARGET_PEAK_RSS_MB
    elapsed = time.perf_counter() - started
    say(f"targets: vs_orjson_parse >= {TARGET_VS_ORJSON} and peak RSS <= {TARGET_PEAK_RSS_MB:.0f} MB: "
        f"{'met' if met else 'NOT met'}; finished in {elapsed:.1f} s")
    return {
        "records": records,
        "bodies": len(bodies),
        "bytes": total_bytes,
        "seed": seed,
        "rules": len(rules),
        "records_per_s": round(fast.per_second),
        "vs_orjson_parse": round(vs_orjson, 2),
        "peak_rss_mb": peak,
        "peak_rss_batch_records": batch_records,
        "orjson_records_per_s": round(base.per_second),
        "prefilter_off_records_per_s": round(slow.per_second),
        "prefilter_on_records_per_s": round(fast.per_second),
        "on_vs_off": round(fast.per_second / slow.per_second, 1),
        "health_census_records_per_s": round(census.per_second),
        "health_census_vs_orjson_parse": round(census.per_second / base.per_second, 2),
        "with_health_records_per_s": round(health.per_second),
        "with_health_vs_orjson_parse": round(with_health_vs_orjson, 2),
        "off_vs_orjson_parse": round(slow.per_second / base.per_second, 3),
        "bodies_parsed": on.stats.bodies_parsed,
        "records_mapped": on.stats.records_mapped,
        "alerts": len(on.alerts),
        "overflow": len(on.overflow),
        "excepted": len(on.excepted),
        "identical_alerts": True,
        "peak_rss_mb_prefilter_on": rss_on["peak_rss_mb"],
        "peak_rss_mb_prefilter_off": rss_off["peak_rss_mb"],
        "import_module": imported["module"],
        "import_ms": imported["import_ms"],
        "targets_met": met,
        "elapsed_s": round(elapsed, 1),
    }
