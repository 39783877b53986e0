"""The graph of a converted artifact (harness/artifacts/graph.py) and its page (reports/graph.py), on tiny
TinyLlama: both signatures as Model Explorer's adapter reads them, the authored model's ATen ops, what
conversion fused, the page in headless Chromium, and `python -m harness explore` (page and server)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO, run_cli

HOSTILE = '<img src=x onerror="alert(1)">'
SDPA, RMS_NORM = "odml.scaled_dot_product_attention", "odml.rms_norm"


@pytest.fixture(scope="module")
def spec():
    from models.registry import get_spec

    return get_spec("tinyllama", "tiny")


@pytest.fixture(scope="module")
def artifact(tiny_artifact):
    return tiny_artifact("dynamic_int8", prefill=32, decode=16)


@pytest.fixture(scope="module")
def graph(spec, artifact):
    from harness.artifacts.graph import artifact_graph

    return artifact_graph(spec, artifact)


def test_both_signatures_with_their_ops_and_the_adapters_node_counts(graph, artifact, spec):
    from harness.artifacts.graph import adapter_json

    layers = spec.config().num_layers
    assert [s.name for s in graph.converted] == ["prefill", "decode"]
    # The node counts are the adapter's own (measured: prefill 121, decode 143), read here straight from it.
    raw = {sg["id"]: len(sg["nodes"]) for c in adapter_json(artifact.path) for sg in c["subgraphs"]}
    prefill, decode = graph.signature("prefill"), graph.signature("decode")
    assert (prefill.nodes, decode.nodes) == (raw["prefill"], raw["decode"])
    for sig in (prefill, decode):
        assert 0 < sig.op_count < sig.nodes  # constants and the input/output nodes are nodes, not ops
        assert all(n > 0 for n in sig.ops.values())
        assert sig.ops["dynamic_update_slice"] == 2 * layers  # K and V written per layer
    # Decode runs every layer and the head: one fully_connected per authored linear (q/k/v fused, out, gate, up,
    # down per layer, the head). Prefill returns only the KV cache, so conversion drops what follows the last
    # layer's K/V projection.
    authored = {s.name: s for s in graph.authored}
    assert decode.ops["fully_connected"] == authored["decode"].ops["aten.linear"] == 5 * layers + 1
    assert 0 < prefill.ops["fully_connected"] < authored["prefill"].ops["aten.linear"]
    assert decode.nodes > prefill.nodes


def test_authored_ops_and_what_conversion_fused(graph, spec):
    layers = spec.config().num_layers
    assert [s.name for s in graph.authored] == ["prefill", "decode"]
    for sig in graph.authored:
        assert sig.ops["aten.scaled_dot_product_attention"] == layers
        assert sig.ops["aten.embedding"] == 1 and sig.op_count == sig.nodes > 100
        assert not any(op.startswith(("litert_torch.mark_tensor", "<built-in")) for op in sig.ops)
    fused = {f.name: f for f in graph.fused}
    assert set(fused) == {SDPA, RMS_NORM}
    sdpa, norm = fused[SDPA], fused[RMS_NORM]
    assert sdpa.authored == {"prefill": layers, "decode": layers}
    assert sdpa.converted == {"prefill": layers - 1, "decode": layers}  # prefill's last attention feeds nothing
    assert norm.converted["decode"] == norm.authored["decode"] == 2 * layers + 1  # two per layer and the final one
    # One region of the authored graph stands for the composite; its decomposition in the file does the work.
    assert "aten.scaled_dot_product_attention" in sdpa.replaces[0].ops
    assert all({"batch_matmul", "softmax"} <= set(v.ops) for v in sdpa.decomposition)
    assert {"aten.rsqrt", "aten.mean.dim"} <= set(norm.replaces[0].ops)
    assert all({"rsqrt", "mean"} <= set(v.ops) for v in norm.decomposition)
    assert sum(v.instances for v in sdpa.decomposition) == sum(sdpa.converted.values())


def test_graph_is_cached_beside_the_artifact(graph, spec, artifact):
    from harness.artifacts.graph import GRAPH_FILE, artifact_graph

    cached = artifact.path.with_name(GRAPH_FILE)
    stamp = cached.stat().st_mtime_ns
    start = time.monotonic()
    again = artifact_graph(spec, artifact)
    assert time.monotonic() - start < 1.0 and cached.stat().st_mtime_ns == stamp
    assert again == graph and json.loads(cached.read_text())["sha256"] == artifact.sha256


def test_page_in_headless_chromium(browser, graph, spec, artifact, tmp_path, record_property):
    from harness.artifacts.graph import SignatureGraph
    from reports.graph import render_graph_page, write_graph_page

    path = render_graph_page(spec, artifact, tmp_path / "graph.html")
    # The same page with an op name from a hostile file: shown as text, run as nothing.
    decode = graph.signature("decode")
    hostile = dataclasses.replace(graph, converted=[graph.signature("prefill"), SignatureGraph(
        decode.name, decode.nodes, {**decode.ops, HOSTILE: 1}, {**decode.composites, HOSTILE: [{HOSTILE: 1}]})])
    hostile_path = write_graph_page(hostile, tmp_path / "hostile.html")
    for page_path in (path, hostile_path):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        console, requests, dialogs = [], [], []
        page.on("console", lambda m, console=console: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e, console=console: console.append(f"pageerror: {e}"))
        page.on("request", lambda r, requests=requests: requests.append(r.url))
        page.on("dialog", lambda d, dialogs=dialogs: (dialogs.append(d.message), d.dismiss()))
        page.goto(page_path.as_uri(), wait_until="load")
        shot = tmp_path / f"{page_path.stem}.png"
        page.screenshot(path=str(shot), full_page=True)
        record_property(f"screenshot_{page_path.stem}", str(shot))

        assert console == [], console  # no errors, not even a CSP violation
        assert requests == [page_path.as_uri()]  # nothing but the file itself
        assert dialogs == [] and page.locator("script").count() == 0
        rows = page.locator("#signatures tbody tr")
        assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == ["prefill", "decode"]
        assert page.locator("#converted-ops thead th").all_inner_texts() == ["op", "prefill", "decode"]
        assert page.locator("#authored-ops thead th").all_inner_texts() == ["op", "prefill", "decode"]
        fc = page.locator("#converted-ops tbody tr", has_text="fully_connected").locator("td").all_inner_texts()
        assert fc == ["fully_connected", str(graph.signature("prefill").ops["fully_connected"]),
                      str(decode.ops["fully_connected"])]
        assert page.locator("#authored-ops tbody tr").count() == len(
            {op for s in graph.authored for op in s.ops})
        fused = page.inner_text("#fused")
        assert SDPA in fused and RMS_NORM in fused and "batch_matmul" in fused
        if page_path == hostile_path:
            assert HOSTILE in page.inner_text("#converted-ops") and HOSTILE in fused
        page.close()


def test_explore_page_from_the_command_line(tmp_path, artifact):
    out = tmp_path / "sub" / "graph.html"
    result = run_cli("explore", "--model", "tinyllama", "--quant", "dynamic_int8", "--prefill", "32", "--decode",
                     "16", "--page", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    html = out.read_text()
    assert "<script" not in html and "fully_connected" in html and SDPA in html


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def test_explore_serves_both_graphs_on_localhost(tmp_path, artifact, graph):
    """The web app's server answers on 127.0.0.1 with the authored graphs it was given and the .tflite's
    signatures through its adapter; SIGTERM to its process group stops it. Measured: up ~12 s after start."""
    port = _free_port()
    log = (tmp_path / "explore.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "explore", "--model", "tinyllama", "--quant",
                             "dynamic_int8", "--prefill", "32", "--decode", "16", "--port", str(port),
                             "--no-browser"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    authored = {s.name: s for s in graph.authored}
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "explore.log").read_text()[-3000:]
            with contextlib.suppress(OSError):
                status, index = _get(f"{base}/", timeout=5)
                break
            assert time.monotonic() < deadline, "no answer within 180 s"
            time.sleep(0.5)
        assert status == 200 and b"<html" in index.lower()
        for i, signature in enumerate(["prefill", "decode"]):  # add_model_from_pytorch's graphs, in order
            _, body = _get(f"{base}/api/v1/load_graphs_json?graph_index={i}")
            labels = [n["label"] for n in json.loads(body)["graphs"][0]["nodes"]]
            assert labels.count("aten.linear") == authored[signature].ops["aten.linear"], signature
        _, body = _get(f"{base}/apipost/v1/send_command", {
            "extensionId": "builtin_tflite_flatbuffer", "cmdId": "convert", "modelPath": str(artifact.path),
            "settings": {}, "deleteAfterConversion": False})
        graphs = {g["id"]: g for c in json.loads(body)["graphCollections"] for g in c["graphs"]}
        assert {"prefill", "decode"} <= set(graphs)
        assert any(n["label"] == "fully_connected" for n in graphs["decode"]["nodes"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "explore.log").read_text()[-3000:]  # SIGTERM unwinds like Ctrl-C


def test_a_suites_run_writes_each_artifacts_page_beside_its_report_and_links_it(tmp_path):
    from tests.test_profile import run_small_suites

    out = run_small_suites(tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    pages = sorted((tmp_path / "report" / "graphs").glob("*.html"))
    assert len(pages) == 2  # none and dynamic_int8: one artifact each
    html = (tmp_path / "report" / "run-1.html").read_text()
    for page in pages:
        assert f'href="graphs/{page.name}"' in html
        text = page.read_text()
        assert "prefill" in text and "decode" in text and SDPA in text

    off = tmp_path / "off"
    out = run_small_suites(off, "--graph-pages", "off")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert not (off / "report" / "graphs").exists()
    assert 'href="graphs/' not in (off / "report" / "run-1.html").read_text()
