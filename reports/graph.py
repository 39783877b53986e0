"""The graph page of one artifact: each signature's ops with counts, the authored model's ATen ops, and what
conversion fused (harness/artifacts/graph.py computes them). One self-contained HTML file under the same
Content-Security-Policy as the run report (templates/base.html.j2): no script, no request.

`render_graph_page(spec, artifact, out)` is what a report that lists artifacts calls to give each one a page;
`write_graph_pages` gives a run's artifacts theirs beside its report, where the run report links them.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from harness.artifacts.graph import ArtifactGraph, Fused, SignatureGraph, Variant, artifact_graph
from reports.render import graph_page_name, write_whole

if TYPE_CHECKING:
    from harness.artifacts.cache import Artifact
    from models.spec import ModelSpec

# Its own environment over the same templates: reports/render.py links these pages, and importing this module
# there would make an import cycle.
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    autoescape=True,  # op and composite names come from the file
    undefined=jinja2.StrictUndefined,
)


class GraphPageError(RuntimeError):
    """A graph page that cannot be written; the message names the page and its folder."""


def render_graph_page(spec: ModelSpec, artifact: Artifact, out: Path) -> Path:
    """Write the graph page of `artifact` (converted from `spec`) to `out`; return `out`.

    The first call for an artifact runs a child process that reads the file with Model Explorer's adapter
    (tiny: 0.1 s; full TinyLlama int8: 14.5 s) and exports the authored model (~15 s on 2 cores, mostly
    importing torch; cached for the model's other recipes, whose first call then takes ~1 s); later calls read
    graph.json beside the artifact."""
    return write_graph_page(artifact_graph(spec, artifact), out, explore_args=_explore_args(spec, artifact))


def write_graph_pages(artifacts: Iterable[tuple[ModelSpec, Artifact]], report_dir: Path, log=sys.stderr
                      ) -> list[Path]:
    """A page per artifact in report_dir/graphs/, where the run report finds and links them. One that cannot be
    computed or written is a line on `log`, not a lost report: the run's figures are what the report is for."""
    written = []
    for spec, artifact in artifacts:
        out = Path(report_dir) / graph_page_name(artifact.sha256)
        try:
            written.append(render_graph_page(spec, artifact, out))
        except Exception as e:  # noqa: BLE001 - any failure of one page: said, and the next page goes on
            print(f"no graph page for {artifact.path}: {e}", file=log, flush=True)
    return written


def write_graph_page(graph: ArtifactGraph, out: Path, explore_args: str = "") -> Path:
    """The page of an already computed graph; `explore_args` completes the `python -m harness explore` line."""
    html = _ENV.get_template("graph.html.j2").render(
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), g=graph, mib=graph.bytes / 2**20,
        signatures=[_signature_view(c, _named(graph.authored, c.name)) for c in graph.converted],
        converted=_op_rows(graph.converted), authored=_op_rows(graph.authored),
        authored_names=[s.name for s in graph.authored], fused=[_fused_view(f) for f in graph.fused],
        explore_args=explore_args)
    out = Path(out)
    try:
        write_whole(out, html)
    except OSError as e:  # a folder that is a file, or not writable: one line naming the page
        raise GraphPageError(f"cannot write the graph page {out.name} in folder {out.parent}: "
                             f"{e.strerror or e}") from None
    return out


def _explore_args(spec: ModelSpec, artifact: Artifact) -> str:
    from models.spec import DEFAULT_SEED

    meta = artifact.meta
    args = (f"--model {spec.family.name} --size {spec.size} --quant {meta['quant']} "
            f"--prefill {meta['prefill_len']} --kv-len {meta['kv_len']}")
    if spec.checkpoint_dir is not None:
        args += f" --checkpoint-dir {spec.checkpoint_dir}"
    elif spec.seed != DEFAULT_SEED:
        args += f" --seed {spec.seed}"
    return args


def _named(graphs: list[SignatureGraph], name: str) -> SignatureGraph | None:
    return next((g for g in graphs if g.name == name), None)


def _signature_view(converted: SignatureGraph, authored: SignatureGraph | None) -> dict:
    return {"name": converted.name, "nodes": converted.nodes, "ops": converted.op_count,
            "composites": sum(len(v) for v in converted.composites.values()),
            "authored_ops": authored.op_count if authored else None}


def _op_rows(graphs: list[SignatureGraph]) -> list[dict]:
    """One row per op over every signature, the most frequent overall first."""
    ops = {op for g in graphs for op in g.ops}
    rows = [{"op": op, "counts": [g.ops.get(op, 0) for g in graphs]} for op in ops]
    return sorted(rows, key=lambda r: (-sum(r["counts"]), r["op"]))


def _ops_text(ops: dict[str, int]) -> str:
    return ", ".join(op if n == 1 else f"{op} ×{n}" for op, n in ops.items()) or "–"


def _variants_text(variants: list[Variant]) -> list[str]:
    """One line per distinct shape; the instance count only where instances differ."""
    if len(variants) == 1:
        return [_ops_text(variants[0].ops)]
    return [f"{v.instances}×: {_ops_text(v.ops)}" for v in variants]


def _fused_view(f: Fused) -> dict:
    dropped = [f"{sig}: {f.authored[sig] - f.converted.get(sig, 0)} of {f.authored[sig]}"
               for sig in f.authored if f.converted.get(sig, 0) < f.authored[sig]]
    return {"name": f.name, "authored": f.authored, "converted": f.converted, "dropped": dropped,
            "replaces": _variants_text(f.replaces), "decomposition": _variants_text(f.decomposition)}
