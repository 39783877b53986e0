"""What a runner measured: the Python twin of the native runner's `RunnerReport` (native/src/report.h).

Every runner (the native one on any device, the in-process LiteRT loop) prints one JSON document of this shape;
`RunnerReport.from_json` is the one place that reads it, `to_json` the one place that writes it from Python.
Adding a per-repetition figure means a field in `Sample` here and in the C++ struct, nothing else.

Other runtimes' benchmarks (LiteRT-LM's `litert_lm.Benchmark`, llama.cpp's `llama-bench`) are read into the same
report by their adapters in this folder; what such an engine does not tell (its init time, its KV cache, the
greedy tokens) is None or empty there, never a made-up figure.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class ReportError(ValueError):
    """A runner's document lacks a field or has one of the wrong type."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One measured repetition. Rates derive from the seconds; the runner writes both."""

    prefill_s: float
    prefill_tok_s: float
    decode_s: float
    decode_tok_s: float
    ttft_ms: float


@dataclasses.dataclass(frozen=True)
class Bandwidth:
    """The runner's streaming-read probe on the cores it was pinned to, before the model loaded."""

    read_gb_s: float
    median_gb_s: float
    probe_bytes: int
    threads: int
    passes: list[float]


@dataclasses.dataclass(frozen=True)
class TopStep:
    """One decode step's highest logits (the runner's --top-k), highest first."""

    ids: list[int]
    logits: list[float]

    def logit(self, token: int) -> float | None:
        """The step's logit for `token`, where it is among the top k."""
        return self.logits[self.ids.index(token)] if token in self.ids else None


@dataclasses.dataclass(frozen=True)
class MemorySplit:
    """Resident memory by part at one phase of the run (native/src/memory_split.h), KiB."""

    phase: str  # load | prefill | decode
    rss_kb: int
    pss_kb: int
    anonymous_kb: int  # heap, arena, KV cache, weights packed in memory
    model_file_kb: int  # the model file's mapped pages: the weights read in place
    weight_cache_kb: int  # XNNPACK's weight cache file's mapped pages
    other_file_kb: int  # libraries, the binary
    private_dirty_kb: int
    swap_kb: int


@dataclasses.dataclass(frozen=True)
class OpTime:
    """One row of a profiled phase (native/src/profiler.h): time spent in one place and counted in no other row."""

    name: str  # a TFLite op (FULLY_CONNECTED), an XNNPACK operator ("Fully Connected (NC, F32) GEMM"), a span
    # op: a TFLite node run by its own kernel, outside any delegate; delegate_op: an XNNPACK operator, timed by
    # XNNPACK; delegate_kernel: the part of an XNNPACK kernel node its operators' timings do not cover;
    # runtime: the part of a runtime span in no node (LiteRT's run and buffer handling, the interpreter between
    # nodes)
    kind: str
    node: int | None  # op: the TFLite node's index
    subgraph: int | None
    kernel: int | None  # delegate rows: which XNNPACK kernel node of the phase
    op: int | None  # delegate_op: the operator's place in its kernel
    us: float
    delegate: bool  # inside the XNNPACK delegate (delegate_op, delegate_kernel)

    @property
    def where(self) -> str:
        """Where in the graph: 'node 12' or 'xnnpack 3.17' (kernel.operator)."""
        if self.kernel is not None:
            return f"xnnpack {self.kernel}" + ("" if self.op is None else f".{self.op}")
        return "" if self.node is None else f"node {self.node}"


@dataclasses.dataclass(frozen=True)
class PhaseProfile:
    wall_us: float  # the phase's wall clock in the profiled repetition, taken like a sample's
    ops: list[OpTime]

    @property
    def total_us(self) -> float:
        return sum(o.us for o in self.ops)


@dataclasses.dataclass(frozen=True)
class Profile:
    """The runner's --profile: one more repetition on an engine of its own with the runtime's profiler on, after
    the measured ones (which ran without it)."""

    profiler: str  # telemetry (the interpreter's) | litert (CompiledModel's)
    prefill: PhaseProfile
    decode: PhaseProfile  # the repetition's last decode step

    def phase(self, name: str) -> PhaseProfile:
        return {"prefill": self.prefill, "decode": self.decode}[name]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Profile:
        def phase(p: dict[str, Any]) -> PhaseProfile:
            return PhaseProfile(float(p["wall_us"]), [OpTime(**{f.name: o[f.name] for f in dataclasses.fields(OpTime)})
                                                      for o in p["ops"]])
        return cls(doc["profiler"], phase(doc["prefill"]), phase(doc["decode"]))


@dataclasses.dataclass(frozen=True)
class PowerWindow:
    """A timed span the power readings are integrated over (native/src/power_sampler.h): "idle" (rep -1), or a
    measured repetition's "prefill" or "decode"; each counter's text read just before and just after it."""

    phase: str
    rep: int
    start_ns: int  # the runner's steady clock (CLOCK_MONOTONIC on Linux and Android)
    end_ns: int
    start_text: list[str]
    end_text: list[str]

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclasses.dataclass(frozen=True)
class PowerTrace:
    """The runner's --power-file readings (every 1/hz s) and --power-counter readings (at window edges), as read:
    units, signs and wraps are harness/measure/energy.py's."""

    hz: int  # asked for
    files: list[str]
    counters: list[str]
    samples: list[list[int | None]]  # [t_ns, one value per file (None: the read failed)]
    windows: list[PowerWindow]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PowerTrace:
        windows = [PowerWindow(**{f.name: w[f.name] for f in dataclasses.fields(PowerWindow)}) for w in doc["windows"]]
        return cls(int(doc["hz"]), list(doc["files"]), list(doc["counters"]), [list(s) for s in doc["samples"]],
                   windows)


@dataclasses.dataclass(frozen=True)
class RunnerReport:
    runner: str
    runner_version: str
    api: str
    runtime: str
    runtime_version: str
    model: str
    model_bytes: int
    threads: int
    prefill_len: int
    decode_len: int
    depth: int
    kv_len: int
    vocab: int | None
    num_layers: int | None
    kv_cache_bytes: int | None
    weight_bytes: int | None  # constant buffers at their stored precision; None where the runner cannot count
    warmup: int
    # With a weight cache, init_ms is the first load as weight_cache says it went, and init_warm_ms reads the
    # cache the first load found or wrote.
    init_ms: float | None  # cold: the first load in the process
    init_warm_ms: float | None  # the second load (None with --no-warm-init)
    samples: list[Sample]
    tokens: list[int]  # greedy tokens of the last repetition ([] where the engine does not say)
    top_logits: list[TopStep]  # per decode step of the last repetition, with --top-k; else []
    peak_rss_kb: int | None  # getrusage ru_maxrss; None where nothing measured it
    vmhwm_kb: int | None  # /proc/self/status VmHWM, where readable
    bandwidth: Bandwidth | None
    xnnpack: bool | None
    # The defaults are a run without --fp16-arithmetic and --weight-cache; from_json still needs every field.
    fp16_arithmetic: bool = False  # XNNPACK computed fp32 operators in fp16 (--fp16-arithmetic, on a CPU with it)
    # XNNPACK's weight cache file at the first load: off (none), cold (absent or unusable: that load packed the
    # weights and wrote it) or warm (a finished cache that load read and left as it was)
    weight_cache: str = "off"
    weight_cache_bytes: int | None = None  # the cache file's size after the run; None when off
    # Resident memory by part after the load, the last prefill and the last decode; [] where the runner cannot
    # read it (iOS, other runtimes' benchmarks).
    memory: list[MemorySplit] = dataclasses.field(default_factory=list)
    # --profile's op timings (native/src/profiler.h); None without it, and from runtimes that cannot profile.
    profile: Profile | None = None
    # --power-file/--power-counter readings around the timed phases; None without them.
    power: PowerTrace | None = None

    @property
    def peak_kb(self) -> int | None:
        """VmHWM first: ru_maxrss can carry the launching process's high-water mark across exec."""
        return self.vmhwm_kb or self.peak_rss_kb

    def values(self, name: str) -> list[float]:
        """One per-repetition figure over every sample."""
        return [getattr(s, name) for s in self.samples]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RunnerReport:
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(doc))
        if missing:
            raise ReportError(f"runner document lacks {', '.join(missing)}")
        try:
            samples = [Sample(**{f.name: float(s[f.name]) for f in dataclasses.fields(Sample)})
                       for s in doc["samples"]]
            bandwidth = None if doc["bandwidth"] is None else Bandwidth(**{
                f.name: doc["bandwidth"][f.name] for f in dataclasses.fields(Bandwidth)})
            top = [TopStep([int(i) for i in t["ids"]], [float(x) for x in t["logits"]]) for t in doc["top_logits"]]
            memory = [MemorySplit(**{f.name: m[f.name] for f in dataclasses.fields(MemorySplit)})
                      for m in doc["memory"]]
            profile = None if doc["profile"] is None else Profile.from_json(doc["profile"])
            power = None if doc["power"] is None else PowerTrace.from_json(doc["power"])
        except (KeyError, TypeError, ValueError) as e:
            raise ReportError(f"runner document has a malformed sample, bandwidth, top_logits, memory, profile or "
                              f"power: {e!r}") from None
        parsed = {"samples", "bandwidth", "top_logits", "memory", "profile", "power"}
        return cls(**{k: doc[k] for k in fields - parsed}, samples=samples, bandwidth=bandwidth, top_logits=top,
                   memory=memory, profile=profile, power=power)

    def memory_at(self, phase: str) -> MemorySplit | None:
        return next((m for m in self.memory if m.phase == phase), None)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
