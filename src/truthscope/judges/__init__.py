"""Judges of free-text answers: is it true, is it informative? One spec names each (`--judge`):

trained              FastJudge: a small network over similarity features to the references, trained
                     on the paper's human labels (`truthscope judge train`; the default)
crossencoder         CrossEncoderJudge: MiniLM fine-tuned as a cross-encoder on the same labels,
                     reading question, answer and the closest true and false references
                     (`truthscope judge train --judge crossencoder`; as trained so far, less accurate)
lm:MODEL             LanguageModelJudge: any model prompted as GPT-judge / GPT-info were
                     (P(" yes") normalised over " yes"/" no")
llama2-judge:MODEL   LanguageModelJudge in the open Llama-2 judges' style (P(" yes") itself)
none                 no judges

Every judge is reported on a frozen question-held-out test split of the human labels
(`judges.split`, `truthscope judge eval`).
"""

from __future__ import annotations

from truthscope.judges.base import KINDS, THRESHOLD, Judge, JudgeItem
from truthscope.judges.classifier import FastJudge, judge_dir, train_judge
from truthscope.judges.crossencoder import CrossEncoder, CrossEncoderJudge
from truthscope.judges.lm_judge import STYLES, LanguageModelJudge, judge_prompt

SPECS = ("trained", "crossencoder", "none", "lm:MODEL", "llama2-judge:MODEL")


def load_judges(spec: str = "trained", embedder=None, **model_options) -> dict[str, Judge]:
    """{"truth": judge, "info": judge} from a judge spec (see the module docstring); `embedder` is
    shared with the trained and cross-encoder judges when given; `model_options` go to `load_model` for the
    language-model judges, whose MODEL may be `TRUTH_MODEL,INFO_MODEL`."""
    from truthscope.errors import TruthscopeError

    if spec == "none":
        return {}
    if spec == "trained":
        return {kind: FastJudge.load(kind, embedder=embedder) for kind in KINDS}
    if spec == "crossencoder":
        return dict(CrossEncoder.load(embedder=embedder).judges())
    prefix, _, models = spec.partition(":")
    if prefix in STYLES and models:
        from truthscope.models import load_model

        names = models.split(",")
        if len(names) > 2 or not all(names):
            raise TruthscopeError(f"judge {spec!r}: give one model, or two (truth,info) separated by a comma")
        loaded = {name: load_model(name, **model_options) for name in dict.fromkeys(names)}
        per_kind = dict(zip(KINDS, names * 2 if len(names) == 1 else names, strict=False))
        return {kind: LanguageModelJudge(loaded[per_kind[kind]], kind, prefix) for kind in KINDS}
    raise TruthscopeError(f"unknown judge {spec!r}; use {', '.join(SPECS)}")


def load_scorers(spec: str = "trained", embed: bool = True, **model_options):
    """(judges, embedder): the judges of `spec` (a missing one fails here, before any work) and one
    MiniLM embedder, shared by the embed_* metrics and the trained and cross-encoder judges, loaded only when
    one of them needs it (None otherwise). `model_options` (device, dtype, ...) go to LM judges."""
    from truthscope.scoring.similarity import SentenceEmbedder

    judges = load_judges(spec, **model_options)
    needing = [j for j in judges.values() if isinstance(j, FastJudge | CrossEncoderJudge)]
    embedder = SentenceEmbedder(store=SentenceEmbedder.default_store()) if needing or embed else None
    for judge in needing:
        judge.embedder = embedder
    return judges, embedder


__all__ = [
    "KINDS",
    "SPECS",
    "THRESHOLD",
    "CrossEncoder",
    "CrossEncoderJudge",
    "FastJudge",
    "Judge",
    "JudgeItem",
    "LanguageModelJudge",
    "judge_dir",
    "judge_prompt",
    "load_judges",
    "load_scorers",
    "train_judge",
]
