"""Bundles: the offline SentencePiece tokenizer, `.litertlm` and MediaPipe `.task` built from a converted tiny
model and what they hold, and LiteRT-LM's own engine against the native runner on the same prompt."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from ai_edge_litert.interpreter import Interpreter

from device_runners.runners import litert_lm
from device_runners.runners.inprocess import kv_cache_length
from device_runners.runners.native import RunnerBuild, build_runner
from harness.artifacts import bundle
from harness.artifacts import tokenizer as tok
from harness.artifacts.cache import Artifact, cache_key, ensure_artifact
from harness.artifacts.recipe import Recipe, kv_len_for
from models.registry import get_spec
from tests.conftest import need_service

pytestmark = pytest.mark.conversion

# The tiny TinyLlama (2 layers, 1 KV head of 32, vocab 2048), converted with prefill 32 and a 128-long KV cache.
PREFILL, DECODE, KV_LEN, KV_HEADS, HEAD_DIM = 32, 16, 128, 1, 32


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def tokenizer_model() -> Path:
    return tok.ensure_tokenizer(tok.TokenizerSpec(vocab_size=get_spec("tinyllama", "tiny").config().vocab_size))


@pytest.fixture(scope="session")
def transposed_artifact() -> Artifact:
    """The export LiteRT-LM's engine runs: KV cache in litert-torch's transposed layout."""
    recipe = Recipe("dynamic_int8", PREFILL, kv_len_for(PREFILL, DECODE), kv_layout="transposed")
    return ensure_artifact(get_spec("tinyllama", "tiny"), recipe)


@pytest.fixture(scope="session")
def litertlm(transposed_artifact, tokenizer_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "m.litertlm"
    return bundle.build_litertlm(transposed_artifact, tokenizer_model, out)


@pytest.fixture(scope="session")
def task(transposed_artifact, tokenizer_model, tmp_path_factory) -> Path:
    try:
        python = bundle.mediapipe_env()
    except RuntimeError as e:  # no package registry here: the isolated environment cannot be made
        need_service(f"no MediaPipe bundler environment: {e}")
    return bundle.build_task(transposed_artifact, tokenizer_model, tmp_path_factory.mktemp("bundles") / "m.task",
                             python=python)


@pytest.fixture(scope="session")
def runner() -> RunnerBuild:
    return build_runner("host")


def runner_tokens(runner: RunnerBuild, model: Path, prompt: list[int], api: str = "compiled_model") -> dict:
    argv = [runner.binary, "--model", model, "--prefill", PREFILL, "--decode", DECODE, "--threads", 1, "--warmup", 0,
            "--reps", 1, "--bandwidth-probe-mb", 0, "--no-warm-init", "--api", api,
            "--prompt-tokens", ",".join(map(str, prompt))]
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ---------------------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_trains_deterministically_and_round_trips_text(tokenizer_model):
    spec = tok.TokenizerSpec()
    corpus = tok.corpus_text(spec.seed, spec.sentences)
    assert 200_000 < len(corpus.encode()) < 1_000_000  # a few hundred KB
    assert tok.corpus_text(spec.seed, spec.sentences) == corpus
    # Two fresh trainings give the cached bytes; another corpus seed gives other bytes.
    assert tok.train_to_temp(spec) == tok.train_to_temp(spec) == tokenizer_model.read_bytes()
    assert tok.train_to_temp(tok.TokenizerSpec(seed=7)) != tokenizer_model.read_bytes()

    sp = tok.load(tokenizer_model)
    assert sp.get_piece_size() == 2048  # exactly the model's vocabulary: every id it emits is a piece
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (tok.UNK_ID, tok.BOS_ID, tok.EOS_ID, tok.PAD_ID)
    assert [sp.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    # Text the tokenizer was not trained on, from another seed, and a hand-written line, come back unchanged.
    for line in [*tok.corpus_text(seed=99, sentences=50).splitlines(), "The quiet engine reads 42 letters, twice!"]:
        ids = sp.encode(line)
        assert sp.decode(ids) == line
        assert len(ids) < len(line)  # it merged characters into pieces


def test_text_with_tokens_fills_a_prefill_signature_exactly(tokenizer_model):
    sp = tok.load(tokenizer_model)
    for n in (PREFILL - 1, 8):
        assert len(sp.encode(tok.text_with_tokens(tokenizer_model, n))) == n


def test_a_full_size_vocabulary_is_trained_pieces_then_padding(tmp_path):
    """The generated corpus trains about 8k pieces; a 32k model's tokenizer pads the rest with user-defined
    pieces, so every id the model emits detokenizes (LiteRT-LM's engine refuses an id past the vocabulary)."""
    import sentencepiece as spm

    model = tok.train(tok.TokenizerSpec(vocab_size=32000), tmp_path / "t.model")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert sp.vocab_size() == 32000
    assert sp.id_to_piece(31999) == "<extra_31999>" and sp.is_control(31999) is False
    trained = sp.id_to_piece(tok.TRAINABLE_VOCAB - 1)
    assert not trained.startswith("<extra_")  # the trained pieces come first, as trained
    assert sp.decode(sp.encode("the quiet river")) == "the quiet river"
    assert max(sp.encode("the quiet river")) < tok.TRAINABLE_VOCAB  # text never reaches the padding


# ---------------------------------------------------------------------------------------------------- the export


def test_transposed_export_is_a_variant_and_the_default_key_is_unchanged(tiny_artifact, transposed_artifact):
    spec = get_spec("tinyllama", "tiny")
    default_recipe = Recipe("dynamic_int8", PREFILL, KV_LEN)
    _, inputs = cache_key(spec, default_recipe)
    # The key of a default-layout artifact has exactly the fields it had before layouts existed.
    assert inputs["recipe"] == {"quant": "dynamic_int8", "prefill_len": PREFILL, "kv_len": KV_LEN}
    assert cache_key(spec, default_recipe)[0] != transposed_artifact.meta["key"]
    with pytest.raises(ValueError, match="unknown KV cache layout 'sideways'; known: default, transposed"):
        Recipe(kv_layout="sideways")

    def kv_shapes(artifact: Artifact) -> tuple[list[int], list[int]]:
        details = Interpreter(model_path=str(artifact.path)).get_signature_runner("decode").get_input_details()
        return list(details["kv_cache_k_0"]["shape"]), list(details["kv_cache_v_0"]["shape"])

    default = tiny_artifact("dynamic_int8", prefill=PREFILL, decode=DECODE)
    assert kv_shapes(default) == ([1, KV_LEN, KV_HEADS, HEAD_DIM],) * 2
    assert kv_shapes(transposed_artifact) == ([1, KV_HEADS, KV_LEN, HEAD_DIM], [1, KV_HEADS, HEAD_DIM, KV_LEN])
    assert transposed_artifact.meta["kv_layout"] == "transposed"
    assert kv_cache_length(*kv_shapes(default)) == kv_cache_length(*kv_shapes(transposed_artifact)) == KV_LEN
    with pytest.raises(ValueError, match="neither the default nor the transposed layout"):
        kv_cache_length([1, KV_HEADS, KV_LEN, HEAD_DIM], [1, KV_HEADS, KV_LEN, HEAD_DIM + 1])


@pytest.mark.parametrize("api", ["compiled_model", "interpreter"])
def test_runner_reads_either_kv_layout_and_computes_the_same(runner, tiny_artifact, transposed_artifact, api):
    prompt = [tok.BOS_ID, *range(10, 10 + PREFILL - 1)]
    default = runner_tokens(runner, tiny_artifact("dynamic_int8", prefill=PREFILL, decode=DECODE).path, prompt, api)
    transposed = runner_tokens(runner, transposed_artifact.path, prompt, api)
    assert default["kv_len"] == transposed["kv_len"] == KV_LEN
    assert default["kv_cache_bytes"] == transposed["kv_cache_bytes"] == 2 * 2 * KV_LEN * KV_HEADS * HEAD_DIM * 4
    assert transposed["tokens"] == default["tokens"]  # same weights, the cache only laid out differently


# ---------------------------------------------------------------------------------------------------- contents


def test_litertlm_holds_the_artifact_and_the_tokenizer(litertlm, transposed_artifact, tokenizer_model):
    contents = bundle.bundle_contents(litertlm)
    assert contents["format"] == "litertlm"
    sections = {s["type"]: s for s in contents["sections"]}
    assert set(sections) == {"LlmMetadataProto", "SP_Tokenizer", "TFLiteModel"}
    model = sections["TFLiteModel"]
    assert model["items"] == {"model_type": "tf_lite_prefill_decode"}
    # The artifact's bytes, unchanged, and the tokenizer's.
    assert (model["bytes"], model["sha256"]) == (transposed_artifact.meta["bytes"], transposed_artifact.sha256)
    assert sections["SP_Tokenizer"]["sha256"] == _sha256(tokenizer_model)
    llm = contents["llm_metadata"]
    assert llm["maxNumTokens"] == KV_LEN
    assert llm["startToken"] == {"tokenIds": {"ids": [tok.BOS_ID]}}
    assert llm["stopTokens"] == [{"tokenIds": {"ids": [tok.EOS_ID]}}]


def test_task_holds_the_artifact_the_tokenizer_and_metadata(task, transposed_artifact, tokenizer_model):
    contents = bundle.bundle_contents(task)
    assert contents["format"] == "task"
    assert list(contents["members"]) == list(bundle.TASK_MEMBERS)
    members = contents["members"]
    assert members["TF_LITE_PREFILL_DECODE"]["sha256"] == transposed_artifact.sha256
    assert members["TOKENIZER_MODEL"]["sha256"] == _sha256(tokenizer_model)
    assert contents["metadata"] == {"start_token": ["<s>"], "stop_tokens": ["</s>"]}


def test_bundle_contents_refuses_other_files(transposed_artifact, tmp_path):
    with pytest.raises(ValueError, match="not a bundle"):
        bundle.bundle_contents(transposed_artifact.path)
    fake = tmp_path / "fake.litertlm"
    fake.write_bytes(b"NOTLITERT" + bytes(100))
    with pytest.raises(ValueError, match="Invalid magic number"):
        bundle.bundle_contents(fake)


# ---------------------------------------------------------------------------------------------------- the engine


def test_engine_greedy_tokens_equal_the_runners(litertlm, transposed_artifact, tokenizer_model, runner):
    sp = tok.load(tokenizer_model)
    # With its start token, the prompt fills the prefill signature exactly: the runner's prompt length.
    prompt = tok.text_with_tokens(tokenizer_model, PREFILL - 1)
    run = litert_lm.engine_generate(litertlm, prompt, DECODE)
    assert run.prompt_tokens == sp.encode(prompt) and run.start_token == sp.bos_id()
    assert run.stop_tokens == [[sp.eos_id()]]

    ours = runner_tokens(runner, transposed_artifact.path, [run.start_token, *run.prompt_tokens])
    assert ours["kv_len"] == KV_LEN  # the runner reads the transposed cache's length too
    candidates = litert_lm.step_candidates(run.chunks, tokenizer_model)
    assert all(len(c) == 1 for c in candidates[1:])  # only the first step's word-start marker is not printed
    assert litert_lm.agrees(ours["tokens"], candidates, run.stop_tokens), (ours["tokens"], run.chunks)

    # The comparison tells prompts apart: the runner's tokens for another prompt do not pass for the engine's.
    other = runner_tokens(runner, transposed_artifact.path, [run.start_token, *run.prompt_tokens[1:], 5])
    assert other["tokens"] != ours["tokens"]
    assert not litert_lm.agrees(other["tokens"], candidates, run.stop_tokens)


def test_task_runs_in_the_engine_like_the_litertlm(task, litertlm, tokenizer_model):
    prompt = tok.text_with_tokens(tokenizer_model, PREFILL - 1)
    from_task = litert_lm.engine_generate(task, prompt, DECODE)
    assert len(from_task.chunks) == DECODE
    assert from_task.chunks == litert_lm.engine_generate(litertlm, prompt, DECODE).chunks


def test_engine_refuses_the_default_kv_layout(tiny_artifact, tokenizer_model, tmp_path):
    """The benchmark artifacts' layout ([1, kv_len, heads, head_dim]): the engine takes the context length from
    the third dimension (the KV heads) and refuses the prompt. When this test fails, LiteRT-LM reads the default
    layout, and bundles no longer need the transposed export."""
    default = bundle.build_litertlm(tiny_artifact("dynamic_int8", prefill=PREFILL, decode=DECODE), tokenizer_model,
                                    tmp_path / "default.litertlm")
    prompt = tok.text_with_tokens(tokenizer_model, PREFILL - 1)
    with pytest.raises(litert_lm.EngineError) as failure:
        litert_lm.engine_generate(default, prompt, DECODE)
    assert f"Passed in max_num_tokens ({KV_LEN}) is larger than what the static model supports ({KV_HEADS})" \
        in failure.value.reason
    assert (f"Input token ids are too long. Exceeding the maximum number of tokens allowed: {PREFILL} >= {KV_HEADS}"
            in failure.value.reason)
