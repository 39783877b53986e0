"""Where a profiled repetition's time goes: the runner's --profile (RunnerReport.profile) summarized per phase.

The runner gives rows that each own a share of a phase's time (native/src/profiler.h): TFLite ops run by their
own kernels, XNNPACK operators timed by XNNPACK, each XNNPACK kernel node's time its operators do not cover,
and the runtime's own spans. Here they become, per phase (prefill, one decode step): time per op type (its sum
and share of the rows' total), the top rows, the share inside the XNNPACK delegate, and how much of the
phase's wall clock the rows account for. `compare_profiles` says which op types moved between two profiles.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from device_runners.runners.report import OpTime, PhaseProfile, Profile

PHASES = ("prefill", "decode")
TOP_N = 10
# Fully connected layers with weights: TFLite's op, and XNNPACK's operator whatever its precisions ("Fully
# Connected (NC, F32) GEMM", "Fully Connected (NC, QDU8, F32, QC8W) GEMM"). XNNPACK's "Dynamic Fully Connected"
# multiplies two activations (attention's scores and values), not weights, and is not one of them.
FC_NAMES = ("FULLY_CONNECTED", "Fully Connected")


@dataclasses.dataclass(frozen=True)
class OpType:
    name: str
    us: float
    share: float  # of the phase's rows' total
    count: int  # rows of this type
    kind: str  # the rows' kind (OpTime.kind); "mixed" where they differ

    @property
    def delegate(self) -> bool:
        return self.kind in ("delegate_op", "delegate_kernel")


@dataclasses.dataclass(frozen=True)
class PhaseSummary:
    phase: str
    wall_us: float  # the phase's wall clock in the profiled repetition
    total_us: float  # the rows' total
    delegate_us: float  # inside the XNNPACK delegate: its operators and its kernel nodes' own time
    runtime_us: float  # the runtime's own spans, outside any op
    op_types: list[OpType]  # largest first
    top: list[OpTime]  # the largest rows, largest first

    @property
    def coverage(self) -> float:
        """The rows' total over the wall clock: what the profile accounts for (the rest is the runner's own
        work around the engine call and, on the interpreter, TFLite between nodes)."""
        return self.total_us / self.wall_us if self.wall_us else 0.0

    @property
    def delegate_share(self) -> float:
        return self.delegate_us / self.total_us if self.total_us else 0.0

    @property
    def runtime_share(self) -> float:
        return self.runtime_us / self.total_us if self.total_us else 0.0

    def share(self, name: str) -> float:
        return next((t.share for t in self.op_types if t.name == name), 0.0)


def as_profile(profile: Profile | dict[str, Any]) -> Profile:
    """A profile from a report, or from its JSON as the store keeps it (data["runner"]["profile"])."""
    return profile if isinstance(profile, Profile) else Profile.from_json(profile)


def op_types(ops: list[OpTime]) -> list[OpType]:
    """Rows grouped by name, largest total first."""
    total = sum(o.us for o in ops)
    us: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    kinds: dict[str, set[str]] = defaultdict(set)
    for o in ops:
        us[o.name] += o.us
        count[o.name] += 1
        kinds[o.name].add(o.kind)
    return sorted((OpType(name, t, t / total if total else 0.0, count[name],
                          next(iter(kinds[name])) if len(kinds[name]) == 1 else "mixed")
                   for name, t in us.items()), key=lambda t: (-t.us, t.name))


def summarize_phase(name: str, phase: PhaseProfile, top_n: int = TOP_N) -> PhaseSummary:
    ops = phase.ops
    return PhaseSummary(
        phase=name, wall_us=phase.wall_us, total_us=phase.total_us,
        delegate_us=sum(o.us for o in ops if o.delegate), runtime_us=sum(o.us for o in ops if o.kind == "runtime"),
        op_types=op_types(ops), top=sorted(ops, key=lambda o: -o.us)[:top_n])


def summarize(profile: Profile | dict[str, Any], top_n: int = TOP_N) -> dict[str, PhaseSummary]:
    """Per phase (prefill, decode): op types, top rows, delegate share, coverage of the wall clock."""
    profile = as_profile(profile)
    return {name: summarize_phase(name, profile.phase(name), top_n) for name in PHASES}


def is_fully_connected(name: str) -> bool:
    return name.startswith(FC_NAMES)


def fc_share(summary: PhaseSummary) -> float:
    """The share of the phase's time in fully connected layers with weights, at any precision."""
    return sum(t.share for t in summary.op_types if is_fully_connected(t.name))


@dataclasses.dataclass(frozen=True)
class Move:
    """One op type in two profiles of a phase: its share and time before and after."""

    phase: str
    name: str
    old_share: float
    new_share: float
    old_us: float
    new_us: float

    @property
    def share_delta(self) -> float:
        return self.new_share - self.old_share

    @property
    def us_delta(self) -> float:
        return self.new_us - self.old_us

    def describe(self) -> str:
        return (f"{self.phase} {self.name}: {self.old_share:.1%} → {self.new_share:.1%} of the time "
                f"({self.old_us:,.0f} → {self.new_us:,.0f} µs)")


def compare_profiles(old: Profile | dict[str, Any], new: Profile | dict[str, Any], top_n: int = 5,
                     min_share: float = 0.01) -> dict[str, list[Move]]:
    """Per phase, the op types whose share moved most (at least `min_share`, at most `top_n`), largest move
    first. Shares, not times, are what compare across runs of a noisy machine: a slower repetition moves every
    time, while a change in one op moves its share. An op type in one profile only counts as 0 in the other."""
    before, after = summarize(old), summarize(new)
    moves: dict[str, list[Move]] = {}
    for phase in PHASES:
        a = {t.name: t for t in before[phase].op_types}
        b = {t.name: t for t in after[phase].op_types}
        rows = [Move(phase, name, a[name].share if name in a else 0.0, b[name].share if name in b else 0.0,
                     a[name].us if name in a else 0.0, b[name].us if name in b else 0.0)
                for name in a.keys() | b.keys()]
        rows = [m for m in rows if abs(m.share_delta) >= min_share]
        moves[phase] = sorted(rows, key=lambda m: (-abs(m.share_delta), m.name))[:top_n]
    return moves


def format_phase(summary: PhaseSummary, limit: int = 15) -> str:
    """A phase's op-type table as text: time, share, rows, delegate, largest first; a line on the totals."""
    head = (f"{summary.phase}: wall {summary.wall_us:,.0f} µs, ops {summary.total_us:,.0f} µs "
            f"({summary.coverage:.0%} of wall), XNNPACK delegate {summary.delegate_share:.1%}, "
            f"runtime {summary.runtime_share:.1%}")
    width = max([len("op type"), *(len(t.name) for t in summary.op_types[:limit])])
    lines = [head, f"  {'op type':<{width}}  {'µs':>9}  {'share':>6}  {'rows':>4}  where"]
    for t in summary.op_types[:limit]:
        where = "delegate" if t.delegate else t.kind
        lines.append(f"  {t.name:<{width}}  {t.us:>9,.1f}  {t.share:>6.1%}  {t.count:>4}  {where}")
    rest = summary.op_types[limit:]
    if rest:
        lines.append(f"  {f'({len(rest)} more)':<{width}}  {sum(t.us for t in rest):>9,.1f}  "
                     f"{sum(t.share for t in rest):>6.1%}")
    return "\n".join(lines)


def format_top(summary: PhaseSummary) -> str:
    """The phase's largest rows, with where each one is in the graph."""
    lines = [f"{summary.phase}: top {len(summary.top)} rows"]
    for o in summary.top:
        lines.append(f"  {o.us:>9,.1f} µs  {o.us / summary.total_us if summary.total_us else 0:>6.1%}  "
                     f"{o.where:<16}  {o.name}")
    return "\n".join(lines)
