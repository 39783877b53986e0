"""A SentencePiece tokenizer trained offline on a corpus this module generates, for bundles (.litertlm, .task).

No tokenizer is downloaded: the corpus is English-like text drawn from fixed word lists and pseudo-words built
from syllables, with a seeded `random.Random`, so the same seed gives the same text on every machine and
Python version (3.2+ keeps `Random(int)` sequences stable). Training runs single-threaded, so the same corpus
and settings give the same model bytes. The model is cached under the harness cache root, never committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import tempfile
from importlib import metadata
from pathlib import Path

import filelock

from harness.common.files import cache_root

# Llama's convention; LiteRT-LM and MediaPipe read bos/eos from the bundle's metadata, not from these ids.
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3
# The most pieces SentencePiece trains from the generated corpus (it stops near 8.8k); the rest are padding.
TRAINABLE_VOCAB = 8000
# Bump when the corpus generator or the trainer arguments below change what is trained.
TOKENIZER_REVISION = 1

_ARTICLES = ("the", "a", "this", "that", "every", "one", "some", "no")
_ADJECTIVES = ("small", "large", "quiet", "bright", "old", "new", "green", "cold", "warm", "fast", "slow", "heavy",
               "light", "simple", "strange", "careful", "happy", "tired", "early", "late", "open", "narrow", "wide",
               "clean", "busy", "gentle", "sharp", "round", "hidden", "famous")
_NOUNS = ("river", "engine", "garden", "teacher", "window", "market", "phone", "model", "city", "forest", "letter",
          "bridge", "kitchen", "signal", "doctor", "student", "table", "morning", "village", "machine", "story",
          "paper", "mountain", "station", "question", "answer", "number", "battery", "camera", "road", "house",
          "friend", "song", "night", "winter", "summer", "ocean", "device", "memory", "screen")
_VERBS = ("sees", "builds", "moves", "finds", "writes", "reads", "carries", "opens", "follows", "measures", "counts",
          "holds", "keeps", "leaves", "meets", "calls", "makes", "takes", "brings", "checks", "paints", "sends",
          "watches", "loads", "runs")
_ADVERBS = ("slowly", "quickly", "again", "today", "often", "never", "always", "carefully", "together", "twice")
_PREPOSITIONS = ("near", "under", "behind", "beside", "across", "inside", "above", "through", "around", "after")
_CONNECTIVES = ("and", "but", "because", "while", "so", "when", "although", "until")
_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "br", "ch", "cl", "dr",
           "fl", "gr", "pl", "sh", "st", "th", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou")
_CODAS = ("", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "ng")


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int = 2048  # the tiny models' vocabulary: every id a model can emit decodes to a piece
    model_type: str = "bpe"
    seed: int = 0
    sentences: int = 6000  # about 400 KB of text

    def __post_init__(self) -> None:
        if self.model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type must be 'bpe' or 'unigram', got {self.model_type!r}")
        if self.vocab_size <= PAD_ID + 1:
            raise ValueError(f"vocab_size must exceed the {PAD_ID + 1} special ids, got {self.vocab_size}")


def corpus_text(seed: int = 0, sentences: int = 6000) -> str:
    """English-like sentences, one per line, from the word lists plus seeded pseudo-words (names and rare words,
    so BPE has enough distinct words to fill a few thousand pieces)."""
    rng = random.Random(seed)
    invented = sorted({_pseudo_word(rng) for _ in range(1500)})
    lines = []
    for _ in range(sentences):
        clauses = [_clause(rng, invented) for _ in range(rng.choice((1, 1, 2)))]
        text = f"{rng.choice(('', ','))} {rng.choice(_CONNECTIVES)} ".join(clauses)
        lines.append(text[0].upper() + text[1:] + rng.choice((".", ".", ".", "?", "!")))
    return "\n".join(lines) + "\n"


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(rng.randint(1, 3)))


def _noun_phrase(rng: random.Random, invented: list[str]) -> str:
    noun = rng.choice(invented) if rng.random() < 0.3 else rng.choice(_NOUNS)
    if rng.random() < 0.5:
        noun = f"{rng.choice(_ADJECTIVES)} {noun}"
    return f"{rng.choice(_ARTICLES)} {noun}"


def _clause(rng: random.Random, invented: list[str]) -> str:
    words = [_noun_phrase(rng, invented), rng.choice(_VERBS), _noun_phrase(rng, invented)]
    if rng.random() < 0.4:
        words += [rng.choice(_PREPOSITIONS), _noun_phrase(rng, invented)]
    if rng.random() < 0.3:
        words.append(rng.choice(_ADVERBS))
    if rng.random() < 0.15:
        words.append(str(rng.randint(0, 2025)))
    return " ".join(words)


def train(spec: TokenizerSpec, out: Path) -> Path:
    """Train a SentencePiece model on the generated corpus into `out` (a .model file); returns `out`."""
    import sentencepiece as spm

    text = corpus_text(spec.seed, spec.sentences)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines()),
        model_writer=model,
        vocab_size=min(spec.vocab_size, TRAINABLE_VOCAB),
        model_type=spec.model_type,
        # Single-threaded and no sampling of the input: the same corpus gives the same bytes.
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        character_coverage=1.0,
        # A hard limit: the vocabulary is exactly the model's, so every id the model can emit is a piece.
        hard_vocab_limit=True,
        unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
        # Pieces never span a space or mix digits into words: token boundaries stay where the words are.
        split_digits=True,
        minloglevel=2,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".partial")
    tmp.write_bytes(_padded(model.getvalue(), spec.vocab_size))
    os.replace(tmp, out)  # atomic: a concurrent reader sees all of it or nothing
    return out


def _padded(model: bytes, vocab_size: int) -> bytes:
    """The trained model with USER_DEFINED pieces `<extra_N>` appended up to `vocab_size`: the generated corpus
    trains at most TRAINABLE_VOCAB pieces, and full-size models emit ids up to 32k-256k, every one of which
    LiteRT-LM's engine must be able to detokenize."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    if len(proto.pieces) >= vocab_size:
        return model
    for n in range(len(proto.pieces), vocab_size):
        proto.pieces.add(piece=f"<extra_{n}>", score=0.0,
                         type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return proto.SerializeToString()


def cache_key(spec: TokenizerSpec) -> str:
    inputs = {"spec": dataclasses.asdict(spec), "sentencepiece": metadata.version("sentencepiece"),
              "revision": TOKENIZER_REVISION}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def ensure_tokenizer(spec: TokenizerSpec | None = None) -> Path:
    """The cached tokenizer model for `spec`, training it first if the cache lacks it."""
    spec = spec or TokenizerSpec()
    folder = cache_root() / "tokenizers" / f"sp-{spec.model_type}-{spec.vocab_size}-{cache_key(spec)}"
    model = folder / "tokenizer.model"
    folder.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(folder / "train.lock"):
        if not model.is_file():
            train(spec, model)
    return model


def load(path: Path):
    """A SentencePieceProcessor for the model at `path`."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(path))


def text_with_tokens(path: Path, n: int, seed: int = 1) -> str:
    """A prompt of generated text that the tokenizer at `path` encodes to exactly `n` tokens (no bos), e.g. to
    fill a fixed prefill signature exactly; the first such run of words in the corpus for `seed`."""
    sp = load(path)
    words = corpus_text(seed, sentences=200).split()
    for start in range(len(words)):
        for end in range(start + 1, len(words) + 1):
            count = len(sp.encode(" ".join(words[start:end])))
            if count == n:
                return " ".join(words[start:end])
            if count > n:
                break
    raise ValueError(f"no run of words in the generated corpus encodes to exactly {n} tokens")


def train_to_temp(spec: TokenizerSpec) -> bytes:
    """The model bytes of a fresh training run outside the cache (to check that training is deterministic)."""
    with tempfile.TemporaryDirectory() as tmp:
        return train(spec, Path(tmp) / "tokenizer.model").read_bytes()
