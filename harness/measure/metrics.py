"""A cell's result as one typed record, and the one field list every later stage reads.

`CellResult` is what one benchmark cell stores: what it was (model, quant, device, lengths), how it went
(status, error) and its summary figures. Its fields, with the metadata below, are the single list behind the
store's columns (harness/store/schema.py), every export format (reports/printers.py), the terminal table
(reports/table.py chooses which to show) and the gate's metrics (harness/gate/config.py): like llama-bench's
`test::get_fields()`. A new figure is a field here (and, if the runner measures it, in RunnerReport); the places
that show it pick it up by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def figure(label: str, unit: str = "", fmt: str = "{:.1f}", *, better: str | None = None, sampled: bool = False,
           compared: bool = True) -> Any:
    """A numeric field of the result. `better` (higher | lower) makes it a metric the gate can hold to limits
    (min_/max_) and compare with a baseline when `compared`; `sampled` ones have one value per repetition."""
    return dataclasses.field(default=None, metadata={
        "label": label, "unit": unit, "fmt": fmt, "better": better, "sampled": sampled, "compared": compared})


def text(label: str, fmt: str = "{}") -> Any:
    return dataclasses.field(default=None, metadata={"label": label, "fmt": fmt})


@dataclasses.dataclass
class CellResult:
    # what the cell measured
    model: str = text("model")
    quant: str = text("quant")
    device: str = text("device")
    # What ran it (harness/measure/runtimes.py): litert (our native runner), litert-lm, llama.cpp. Rows stored
    # before runtimes were a dimension were all litert.
    runtime: str = text("runtime")
    prefill_len: int = figure("p", fmt="{:.0f}")
    decode_len: int = figure("d", fmt="{:.0f}")
    depth: int = figure("depth", fmt="{:.0f}")
    threads: int = figure("thr", fmt="{:.0f}")
    cpus: str = text("cpus")
    # Measured on an emulator (qemu-arm64): what it computed counts, its speed does not (never gated, greyed).
    emulated: bool = text("emulated", "bool")
    # How the runtime ran it: XNNPACK's weight cache beside the model (on | off: harness/measure/weight_cache.py),
    # and whether XNNPACK computed fp32 operators in fp16 (fp16 artifacts, on CPUs with fp16 arithmetic).
    weight_cache: str = text("weight cache")
    fp16_arithmetic: bool = text("fp16 arithmetic", "bool")
    # how it went
    status: str = text("status")  # ok | failed
    error: str = text("error")
    # the figures: medians over the repetitions, spread, memory
    prefill_tok_s: float = figure("prefill tok/s", " tok/s", better="higher", sampled=True)
    decode_tok_s: float = figure("decode tok/s", " tok/s", better="higher", sampled=True)
    ttft_ms: float = figure("TTFT", " ms", better="lower", sampled=True)
    init_ms: float = figure("init", " ms", "{:.0f}", better="lower", compared=False)  # cold init: too noisy
    init_warm_ms: float = figure("init warm", " ms", "{:.0f}")
    peak_rss_mb: float = figure("peak RSS", " MB", "{:.0f}", better="lower")
    # With the weight cache on, init_ms and peak_rss_mb are a launch that finds the cache (an app's every launch
    # but its first); these are the first launch's, which packs the weights and writes the cache, and its size.
    init_cache_cold_ms: float = figure("init cache cold", " ms", "{:.0f}")
    peak_rss_cache_cold_mb: float = figure("peak RSS cache cold", " MB", "{:.0f}")
    weight_cache_mb: float = figure("weight cache", " MB", "{:.0f}")
    # Resident memory by part at the end of the decode (the runner reads /proc/self/smaps: native/src/
    # memory_split.h): the model file's pages (weights read in place), XNNPACK's weight cache file's, anonymous
    # memory (KV cache, arena, weights packed in memory), PSS and swap. Limits only (max_...): a part that grows
    # fails its cell; not compared with a baseline, since file pages come and go with the page cache.
    mem_model_file_mb: float = figure("resident model file", " MB", "{:.0f}", better="lower", compared=False)
    mem_weight_cache_mb: float = figure("resident weight cache", " MB", "{:.0f}", better="lower", compared=False)
    mem_anonymous_mb: float = figure("anonymous", " MB", "{:.0f}", better="lower", compared=False)
    mem_pss_mb: float = figure("PSS", " MB", "{:.0f}", better="lower", compared=False)
    mem_swap_mb: float = figure("swap", " MB", "{:.0f}", better="lower", compared=False)
    # Energy where the device has a power meter (harness/measure/energy.py): `energy` names the meter, its units
    # and sampling rate, or says `unavailable: <why>` (no meter, a charging battery, a phase too short to
    # integrate); the average draw of the idle window, the prefills and the decodes; J per token of each phase
    # with the idle draw subtracted. Limits only: one value per cell, so no test can tell a change from noise.
    energy: str = text("energy")
    energy_hz: float = figure("energy Hz", " Hz", "{:.0f}")
    idle_w: float = figure("idle power", " W", "{:.2f}")
    prefill_w: float = figure("prefill power", " W", "{:.2f}")
    decode_w: float = figure("decode power", " W", "{:.2f}")
    prefill_j_tok: float = figure("prefill energy", " J/tok", "{:.4f}", better="lower", compared=False)
    decode_j_tok: float = figure("decode energy", " J/tok", "{:.4f}", better="lower", compared=False)
    prefill_cv_pct: float = figure("prefill cv%")
    decode_cv_pct: float = figure("decode cv%")
    decode_ci_low: float = figure("decode CI low")
    decode_ci_high: float = figure("decode CI high")
    stable: bool = text("stable", "bool")
    warnings: str = text("warnings")  # newline-separated: throttling, frequency drops, wide spread
    # the roofline
    bandwidth_gb_s: float = figure("BW GB/s")
    decode_bandwidth_share: float = figure("bw share", fmt="{:.0%}")  # None when cache-resident
    cache_resident: bool = text("cache-resident", "bool")  # decode read faster than the memory probe
    prefill_gflop_s: float = figure("prefill GFLOP/s")
    # which bytes ran
    artifact_sha256: str = text("artifact sha256")
    artifact_bytes: int = figure("artifact bytes", fmt="{:.0f}")

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CellResult:
        """A result from a mapping of its fields (a stored row, a fixture); unknown names are refused."""
        unknown = set(row) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown result columns: {sorted(unknown)}")
        return cls(**row)


FIELDS: tuple[dataclasses.Field, ...] = dataclasses.fields(CellResult)
FIELD = {f.name: f for f in FIELDS}
# Figures with one value per repetition (RunnerReport.samples); the rest are one per process.
SAMPLED = tuple(f.name for f in FIELDS if f.metadata.get("sampled"))


def python_type(field: dataclasses.Field) -> type:
    """The field's value type (the annotations are strings under `from __future__ import annotations`)."""
    return {"str": str, "int": int, "float": float, "bool": bool}[str(field.type)]
