"""A converted artifact's graph, signature by signature, set against the model it was authored as.

Three views of one artifact, for the graph page (reports/graph.py) and `python -m harness explore`:

- **converted**: each signature of the .tflite (`prefill`, `decode`) as Model Explorer's adapter reads it
  (`ai_edge_model_explorer_adapter.ConvertFlatbufferDirectlyToJson`, no browser, ~0.1 s): its node count and its
  ops with counts;
- **authored**: the same two signatures of the reauthored module, exported with `torch.export` exactly as the
  conversion exports them (harness/artifacts/convert_worker.py's `signatures`), counted by ATen op;
- **fused**: what conversion turned into one op. litert-torch marks regions of the authored graph
  (`litert_torch.mark_tensor` around RMSNorm and scaled-dot-product attention) and the converter keeps each
  region as one STABLEHLO_COMPOSITE op named `odml.*`, whose decomposition is a subgraph of the file: the
  runtime runs that subgraph unless a delegate claims the composite by name. Each composite is listed with the
  ATen ops it stands for and the ops of its decomposition.

Both are computed in a child process (`python -m harness.artifacts.graph JOB`), like a conversion: the export
imports torch and litert-torch (seconds) and leaves PyTorch's threads behind, and the adapter reads the whole file
(full TinyLlama int8: 14.5 s, 2.4 GB peak), none of which the process that measures or reports should carry.
Results are cached: the whole graph beside the artifact (graph.json, keyed by the file's
sha256), the authored part under the cache root keyed by what shapes the graph (architecture, lengths, tool
versions, not the weights), so an artifact's other recipes reuse it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.artifacts.recipe import Recipe
from harness.common.files import cache_root

if TYPE_CHECKING:
    import torch

    from harness.artifacts.cache import Artifact
    from models.spec import ModelSpec

# Bump when what this module computes changes: cached graph.json files and authored counts are then redone.
GRAPH_REVISION = 1
GRAPH_FILE = "graph.json"  # beside the artifact
SIGNATURES = ("prefill", "decode")
# Adapter nodes that are no op of the file: a signature's inputs and outputs, and its constants (weights, shapes).
NOT_OPS = frozenset({"GraphInputs", "GraphOutputs", "pseudo_const"})
COMPOSITE_OP = "stablehlo_composite"
_NAME_ATTR = re.compile(r'"([^"]+)"')  # the adapter writes a composite's name as #vhlo.string_v1<"odml.rms_norm">
_AUTHORED_TOOLS = ("torch", "litert-torch")

OpCounts = dict[str, int]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One shape of a composite: the ops inside it and how many of its instances have exactly those ops."""

    ops: OpCounts
    instances: int


@dataclasses.dataclass(frozen=True)
class SignatureGraph:
    """One signature, converted (ops as the adapter names them) or authored (ATen ops)."""

    name: str
    nodes: int  # converted: every node the adapter gives (ops, constants, inputs, outputs); authored: op calls
    ops: OpCounts  # op → count, most frequent first; composites count as one op each
    composites: dict[str, list[OpCounts]]  # composite name → each instance's inner ops, in graph order

    @property
    def op_count(self) -> int:
        return sum(self.ops.values())


@dataclasses.dataclass(frozen=True)
class Fused:
    """A composite of the converted file set against the authored ops it replaces."""

    name: str  # odml.rms_norm, odml.scaled_dot_product_attention, ...
    authored: dict[str, int]  # signature → regions marked in the authored export
    converted: dict[str, int]  # signature → composite ops in the .tflite (dead regions are dropped)
    replaces: list[Variant]  # the ATen ops of one marked region
    decomposition: list[Variant]  # the ops of one instance's decomposition subgraph in the file


@dataclasses.dataclass(frozen=True)
class ArtifactGraph:
    model: str
    quant: str
    prefill_len: int
    kv_len: int
    file: str
    bytes: int
    sha256: str
    adapter_version: str
    converted: list[SignatureGraph]
    authored: list[SignatureGraph]
    # When first computed: the adapter's read, the authored export (0.0: cached), the child's wall time (imports
    # included)
    seconds: dict[str, float]

    @property
    def fused(self) -> list[Fused]:
        return fused(self.converted, self.authored)

    def signature(self, name: str) -> SignatureGraph:
        return next(s for s in self.converted if s.name == name)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ArtifactGraph:
        sigs = lambda rows: [SignatureGraph(**row) for row in rows]  # noqa: E731 - two uses, one line
        return cls(**{**data, "converted": sigs(data["converted"]), "authored": sigs(data["authored"])})


# --- the converted file, through Model Explorer's adapter ------------------------------------------------------


def adapter_version() -> str:
    return metadata.version("ai-edge-model-explorer-adapter")


def adapter_json(tflite: Path | str) -> list[dict]:
    """The adapter's graph collections for a .tflite: signatures and composite decompositions as subgraphs."""
    import ai_edge_model_explorer_adapter as adapter

    return json.loads(adapter.ConvertFlatbufferDirectlyToJson(adapter.VisualizeConfig(), str(tflite)))


def converted_signatures(collections_json: list[dict]) -> list[SignatureGraph]:
    """Each signature of the file: the subgraphs no composite points to (the others are decompositions)."""
    subgraphs = {sg["id"]: sg for collection in collections_json for sg in collection["subgraphs"]}
    inner = {sid for sg in subgraphs.values() for node in sg["nodes"] for sid in node.get("subgraphIds", [])}
    graphs = []
    for sid, sg in subgraphs.items():
        if sid in inner:
            continue
        composites: dict[str, list[OpCounts]] = collections.defaultdict(list)
        for node in sg["nodes"]:
            if node["label"] == COMPOSITE_OP:
                ops: collections.Counter[str] = collections.Counter()
                for dec in node.get("subgraphIds", []):
                    ops.update(n["label"] for n in subgraphs[dec]["nodes"] if n["label"] not in NOT_OPS)
                composites[_composite_name(node)].append(_ranked(ops))
        labels = collections.Counter(n["label"] for n in sg["nodes"] if n["label"] not in NOT_OPS)
        graphs.append(SignatureGraph(sid, len(sg["nodes"]), _ranked(labels), dict(composites)))
    return sorted(graphs, key=_signature_order)


def _composite_name(node: dict) -> str:
    value = next((a["value"] for a in node["attrs"] if a["key"] == "name"), "")
    match = _NAME_ATTR.search(value)
    return match.group(1) if match else value or "(unnamed)"


# --- the authored model, through torch.export --------------------------------------------------------------------


def export_signatures(model: torch.nn.Module, config, recipe: Recipe) -> dict[str, Any]:
    """{signature: torch.export.ExportedProgram} of the reauthored module, with the conversion's own sample
    inputs. Non-strict, as litert-torch exports (its `_convert/core.py`); ATen ops as authored, before the
    decompositions the converter runs on its way to StableHLO."""
    import torch

    from harness.artifacts.convert_worker import signatures

    return {name: torch.export.export(module, args=(), kwargs=sample, strict=False)
            for name, module, sample in signatures(model, config, recipe.prefill_len, recipe.kv_len,
                                                   recipe.kv_layout)}


def authored_signature(name: str, program: Any) -> SignatureGraph:
    """An exported program counted by op. Left out: tuple indexing (`getitem`), export's own dtype assertions,
    and litert-torch's composite markers, which compute nothing; the markers delimit the composites instead."""
    nodes = [n for n in program.graph.nodes if n.op == "call_function"]
    counted = [n for n in nodes if _counted(n)]
    return SignatureGraph(name, len(counted), _ranked(collections.Counter(_op_name(n) for n in counted)),
                          _marked_regions(nodes))


def _op_name(node) -> str:
    return str(node.target).removesuffix(".default")


def _counted(node) -> bool:
    name = _op_name(node)
    return not (name.startswith("<built-in") or name.startswith("aten._assert") or _is_marker(node))


def _is_marker(node) -> bool:
    return _op_name(node) == "litert_torch.mark_tensor"


def _marked_regions(nodes: list) -> dict[str, list[OpCounts]]:
    """composite name → each marked region's ops. `mark_tensor(x, name, pos, id, is_input, ...)` marks a
    region's inputs and outputs; its ops are those downstream of its input marks and upstream of its outputs."""
    marks: dict[str, dict[str, list]] = collections.defaultdict(lambda: {"name": "", "in": [], "out": []})
    for node in nodes:
        if _is_marker(node):
            _, name, _, region, is_input = node.args[:5]
            marks[region]["name"] = name
            marks[region]["in" if is_input else "out"].append(node)
    regions: dict[str, list[OpCounts]] = collections.defaultdict(list)
    for region in marks.values():  # dicts keep insertion order: regions in graph order
        below = _reach(region["in"], lambda n: n.users)
        above = _reach(region["out"], lambda n: n.all_input_nodes)
        inside = [n for n in below & above if n.op == "call_function" and _counted(n)]
        regions[region["name"]].append(_ranked(collections.Counter(_op_name(n) for n in inside)))
    return dict(regions)


def _reach(start: list, step) -> set:
    seen, todo = set(), list(start)
    while todo:
        node = todo.pop()
        for nxt in step(node):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _structure_only_model(spec: ModelSpec, kv_len: int):
    """The reauthored module with its weights left as allocated. torch.export traces with fake tensors, so no
    weight value is read: a full-size model then costs address space instead of gigabytes of random draws
    (models/weights.py's build_model does the same build, then writes every weight)."""
    from models.weights_file import skip_random_init

    with skip_random_init(True):
        return spec.family.model_class(spec.config(), mask_cache_size=kv_len).eval()


def authored_signatures(spec: ModelSpec, recipe: Recipe) -> list[SignatureGraph]:
    """What the child process computes: the authored export of both signatures, counted."""
    programs = export_signatures(_structure_only_model(spec, recipe.kv_len), spec.config(), recipe)
    return sorted((authored_signature(name, p) for name, p in programs.items()), key=_signature_order)


def _authored_key(spec: ModelSpec, recipe: Recipe) -> str:
    # The graph's shape depends on the architecture and the lengths, not on the weights: seeds and checkpoints
    # share it (spec.fingerprint()'s "weights" is left out).
    shape = {k: v for k, v in spec.fingerprint().items() if k != "weights"}
    inputs = {"model": shape, "prefill_len": recipe.prefill_len, "kv_len": recipe.kv_len,
              "kv_layout": recipe.kv_layout, "revision": GRAPH_REVISION,
              "tools": {name: metadata.version(name) for name in _AUTHORED_TOOLS}}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _authored_path(spec: ModelSpec, recipe: Recipe) -> Path:
    layout = "" if recipe.kv_layout == "default" else f"-{recipe.kv_layout}"
    return (cache_root() / "graphs"
            / f"{spec.name}-p{recipe.prefill_len}-kv{recipe.kv_len}{layout}-{_authored_key(spec, recipe)}.json")


def _in_child(job: dict, what: str, log) -> dict:
    """main(job) in a child process: its JSON answer, the child's wall seconds under "child_s"."""
    from harness.artifacts.cache import _run_worker

    fd, partial = tempfile.mkstemp(prefix="graph-", suffix=".json")
    os.close(fd)
    try:
        start = time.monotonic()
        returncode, _ = _run_worker(["harness.artifacts.graph", json.dumps({**job, "out": partial})], log)
        answer = json.loads(Path(partial).read_text() or "null") if returncode == 0 else None
    finally:
        Path(partial).unlink(missing_ok=True)
    if not answer:
        raise RuntimeError(f"{what} failed with exit code {returncode}; its output is above")
    return {**answer, "child_s": round(time.monotonic() - start, 2)}


# --- the three together, cached beside the artifact ------------------------------------------------------------


def fused(converted: list[SignatureGraph], authored: list[SignatureGraph]) -> list[Fused]:
    """Every composite of either side, converted counts against authored ones."""
    names = list(dict.fromkeys(n for s in [*authored, *converted] for n in s.composites))
    return [Fused(name,
                  authored={s.name: len(s.composites.get(name, [])) for s in authored},
                  converted={s.name: len(s.composites.get(name, [])) for s in converted},
                  replaces=_variants(r for s in authored for r in s.composites.get(name, [])),
                  decomposition=_variants(d for s in converted for d in s.composites.get(name, [])))
            for name in names]


def _variants(instances) -> list[Variant]:
    """Identical instances once, with how many there are; the most common first."""
    counts = collections.Counter(json.dumps(ops, sort_keys=True) for ops in instances)
    return [Variant(_ranked(json.loads(key)), n) for key, n in counts.most_common()]


def artifact_graph(spec: ModelSpec, artifact: Artifact, *, log=sys.stderr) -> ArtifactGraph:
    """The artifact's graph (converted, authored, fused), from graph.json beside it when that describes these
    very bytes with the same adapter, else computed and written there."""
    path = artifact.path.with_name(GRAPH_FILE)
    version = adapter_version()
    if path.is_file():
        data = json.loads(path.read_text())
        if (data.pop("revision", None), data.get("sha256"), data.get("adapter_version")) == (
                GRAPH_REVISION, artifact.sha256, version):
            return ArtifactGraph.from_json(data)
    meta = artifact.meta
    recipe = Recipe(meta["quant"], meta["prefill_len"], meta["kv_len"], meta.get("kv_layout", "default"))
    # The adapter reads the whole file (full TinyLlama int8: 14.5 s, 2.4 GB peak) and the export imports torch:
    # both in one child, torch only where the authored counts are not cached yet.
    authored_path = _authored_path(spec, recipe)
    job: dict = {"tflite": str(artifact.path)}
    if not authored_path.is_file():
        job.update(family=spec.family.name, size=spec.size, recipe=dataclasses.asdict(recipe))
    answer = _in_child(job, f"reading the graph of {artifact.path}", log)
    if "authored" in answer:
        authored_path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(authored_path, answer["authored"])
    authored = [SignatureGraph(**row) for row in json.loads(authored_path.read_text())]
    graph = ArtifactGraph(spec.name, recipe.quant, recipe.prefill_len, recipe.kv_len, str(artifact.path),
                          artifact.path.stat().st_size, artifact.sha256, version,
                          [SignatureGraph(**row) for row in answer["converted"]], authored,
                          {"adapter": answer["adapter_s"], "authored": answer.get("authored_s", 0.0),
                           "child": answer["child_s"]})
    _write_json(path, {"revision": GRAPH_REVISION, **graph.to_json()})
    return graph


def _write_json(path: Path, data: Any) -> None:
    """Whole or not at all (a reader never sees half a file); two processes writing it write the same text."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _ranked(counts: collections.Counter[str] | dict[str, int]) -> OpCounts:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _signature_order(sig: SignatureGraph) -> tuple[int, str]:
    return (SIGNATURES.index(sig.name) if sig.name in SIGNATURES else len(SIGNATURES), sig.name)


# --- Model Explorer's web app ------------------------------------------------------------------------------------


def explore(spec: ModelSpec, artifact: Artifact, *, host: str = "127.0.0.1", port: int = 8080,
            open_browser: bool = True) -> None:
    """Model Explorer on the authored model (both signatures, torch.export, with the spec's weights) and the
    converted .tflite, side by side in one web app; serves until Ctrl-C or SIGTERM. Port 8080 lets Model
    Explorer take the next free one up to 8099; any other port must be free."""
    import model_explorer
    from model_explorer import server

    from models.weights import build_model

    # Model Explorer asks PyPI and GitHub for a newer release when it starts and when the page loads; the
    # harness contacts nothing but the local machine, so the answer is "no newer version", without asking.
    server._check_new_version = lambda print_msg=True: {
        "version": "", "runningVersion": "", "releaseUrl": "", "desktopAppUrl": ""}
    meta = artifact.meta
    recipe = Recipe(meta["quant"], meta["prefill_len"], meta["kv_len"], meta.get("kv_layout", "default"))
    programs = export_signatures(build_model(spec, recipe.kv_len), spec.config(), recipe)
    config = model_explorer.config()
    for name, program in programs.items():
        config.add_model_from_pytorch(f"{spec.name} {name} (authored)", program)
    config.add_model_from_path(str(artifact.path))
    model_explorer.visualize_from_config(config, host=host, port=port, no_open_in_browser=not open_browser)


def main(job: dict) -> None:
    """The child process: the converted signatures of job["tflite"] and, when job names a model ("family",
    "size", "recipe"), its authored ones, as JSON to job["out"] with the seconds each took (imports left out)."""
    start = time.monotonic()
    answer: dict = {"converted": [dataclasses.asdict(g) for g in converted_signatures(adapter_json(job["tflite"]))],
                    "adapter_s": round(time.monotonic() - start, 3)}
    if "recipe" in job:
        from models.registry import get_spec

        spec = get_spec(job["family"], job["size"])
        start = time.monotonic()
        graphs = authored_signatures(spec, Recipe(**job["recipe"]))
        answer.update(authored=[dataclasses.asdict(g) for g in graphs], authored_s=round(time.monotonic() - start, 2))
    Path(job["out"]).write_text(json.dumps(answer))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
