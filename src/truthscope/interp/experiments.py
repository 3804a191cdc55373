"""What `probe`, `latent` and `steer` share: the questions, the model, the hook points, the
activation sets (with CCS's label-free contrast pairs), the question split, the random-init control
model and the judges (with a fallback).

Every command draws its questions with `sampling.draw` (`--limit`, `--draw`), reads the same cached
activations and splits TruthfulQA by question with the same seed, so the questions `latent` and
`steer` hold out are the ones `probe` tested on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from truthscope.errors import TruthscopeError
from truthscope.interp.activations import ActivationSet, ProbeItem, load_activations, statement_items, truthfulqa_items
from truthscope.interp.probes import CONTRAST_SUFFIXES, grouped_split, parse_layers
from truthscope.runlog import DataFacts, Sample
from truthscope.sampling import draw
from truthscope.tasks.base import Resources

if TYPE_CHECKING:
    from truthscope.models.huggingface import HuggingFaceModel


@dataclass(frozen=True)
class ProbeSet:
    """An activation set as the probes read it: one flat vector per item per hook, and for CCS the
    item's contrast pair ([n, 2, d]: the item followed by " True", and by " False")."""

    name: str
    items: tuple[ProbeItem, ...]
    features: dict[str, np.ndarray]
    logprobs: np.ndarray
    contrast: dict[str, np.ndarray] | None = None

    @cached_property
    def labels(self) -> np.ndarray:
        return np.array([it.label for it in self.items], dtype=np.int64)

    @cached_property
    def groups(self) -> np.ndarray:
        return np.array([it.group for it in self.items], dtype=np.int64)

    @cached_property
    def texts(self) -> list[str]:
        return [it.continuation.strip() for it in self.items]


@dataclass
class Setup:
    """The model, questions and hooks of one probe/latent/steer command."""

    lm: HuggingFaceModel
    resources: Resources
    questions: list
    presets: dict[str, str]
    hooks: list[str]
    protocol: str = "harness"
    preset: str = "qa"
    sample: Sample = field(default_factory=Sample)
    seed: int = 0

    @property
    def version(self) -> str:
        return self.resources.truthfulqa().version

    @property
    def data(self) -> DataFacts:
        dataset = self.resources.truthfulqa()
        return DataFacts(version=dataset.version, sha256=dataset.files)

    @property
    def fmt(self) -> tuple[str, str, dict[str, str]]:
        """(protocol, preset, presets): how answers are formatted and MC1 is scored."""
        return self.protocol, self.preset, self.presets


def setup(
    lm,
    resources: Resources,
    *,
    protocol: str = "harness",
    preset: str = "qa",
    sample: Sample | None = None,
    layers: str = "all",
    site: str = "resid_post",
    seed: int = 0,
) -> Setup:
    """Check the arguments (a `TruthscopeError` for the user) and draw the questions."""
    from truthscope.interp.hooks import n_layers
    from truthscope.models.huggingface import HuggingFaceModel
    from truthscope.tasks.multiple_choice import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise TruthscopeError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not isinstance(lm, HuggingFaceModel):
        raise TruthscopeError(f"{lm.name!r} has no activations to read: probes need a Hugging Face model")
    sample = sample or Sample(seed=seed)
    presets = resources.preset(preset)
    try:
        hooks = parse_layers(layers, n_layers(lm.model), site)
    except ValueError as err:
        raise TruthscopeError(str(err)) from None
    questions = draw(resources.truthfulqa().questions, sample)
    return Setup(lm, resources, questions, presets, hooks, protocol, preset, sample, seed)


def _flat(array: np.ndarray, keep: int = 1) -> np.ndarray:
    """`attn.heads` [n, heads, d_head] becomes [n, heads * d_head] (pairs: [n, 2, ...] -> [n, 2, -1])."""
    return array.reshape(*array.shape[:keep], -1)


def contrast_variants(items: Sequence[ProbeItem]) -> list[list[ProbeItem]]:
    """Each item followed by each of `CONTRAST_SUFFIXES`; labels kept for bookkeeping only."""
    return [[ProbeItem(it.group, it.label, it.context, it.continuation + s, it.category) for it in items]
            for s in CONTRAST_SUFFIXES]  # fmt: skip


def probe_set(
    lm,
    name: str,
    items: Sequence[ProbeItem],
    hooks: Sequence[str],
    contrast: bool = False,
    progress: bool = True,
    flat: bool = True,
) -> ProbeSet:
    """Activations of `items` (cached), flattened per item unless not `flat` (ITI reads heads);
    with `contrast`, also CCS's pairs."""
    acts: ActivationSet = load_activations(lm, name, items, hooks, progress=progress)
    pairs = None
    if contrast:
        sides = [load_activations(lm, f"{name}-ccs{i}", v, hooks, progress=progress)
                 for i, v in enumerate(contrast_variants(items))]  # fmt: skip
        pairs = {h: _flat(np.stack([s.features[h] for s in sides], axis=1), 2) for h in hooks}
    features = {h: _flat(v) if flat else v for h, v in acts.features.items()}
    return ProbeSet(name, tuple(items), features, acts.logprobs, pairs)


def truthfulqa_set(
    s: Setup, contrast: bool = False, lm=None, hooks: Sequence[str] | None = None, flat: bool = True
) -> ProbeSet:
    """The distinct reference answers of the drawn questions (see `activations.truthfulqa_items`)."""
    from dataclasses import replace

    dataset = replace(s.resources.truthfulqa(), questions=tuple(s.questions))
    items = truthfulqa_items(dataset, s.presets, s.protocol, s.preset)
    name = f"truthfulqa-{dataset.version}-{s.protocol}-{s.preset}"
    return probe_set(lm or s.lm, name, items, hooks or s.hooks, contrast, flat=flat)


def statement_sets(s: Setup, names: Sequence[str], limit: int | None, contrast: bool = False) -> list[ProbeSet]:
    from truthscope.tasks.statements import STATEMENT_SETS, load_statements

    for name in names:
        if name not in STATEMENT_SETS:
            raise TruthscopeError(f"unknown statement set {name!r}; known: {', '.join(STATEMENT_SETS)}")
    return [
        probe_set(s.lm, name, statement_items(load_statements(s.resources.data_dir(), name, limit, s.seed)),
                  s.hooks, contrast)
        for name in names
    ]  # fmt: skip


def split_questions(tqa: ProbeSet, questions: Sequence, test_fraction: float, seed: int = 0):
    """(train indices, test indices, held-out questions): TruthfulQA split by question."""
    train, test = grouped_split(tqa.groups, test_fraction, seed)
    held_out = set(tqa.groups[test].tolist())
    return train, test, [q for q in questions if q.id in held_out]


def random_init_model(lm, seed: int = 0):
    """The same architecture and tokenizer with freshly initialised weights (a fixed seed): what a
    probe finds there is found by the probe, not learnt by the model."""
    import torch
    from transformers import AutoModelForCausalLM

    from truthscope.models.huggingface import HuggingFaceModel

    dtype = next(lm.model.parameters()).dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = AutoModelForCausalLM.from_config(lm.model.config)
    module = module.to(device=lm.device, dtype=dtype).requires_grad_(False)
    return HuggingFaceModel(module, lm.tokenizer, f"{lm.name}@random-init-{seed}", batch_size=lm.batch_size)


def scorers_or_none(resources: Resources, judge: str, embed: bool) -> tuple[dict, object, str, str | None]:
    """(judges, embedder, the judge spec used, a note): when the judges of `judge` cannot be loaded
    (none trained yet), generations are scored by similarity to the references only, and said so."""
    if judge == "none":
        return {}, resources.scorers("none", embed)[1], "none", None
    try:
        judges, embedder = resources.scorers(judge, embed)
        return judges, embedder, judge, None
    except TruthscopeError as err:
        note = f"no judges ({err}); generations are scored by similarity to the references only"
        return {}, resources.scorers("none", embed)[1], "none", note
