"""Judges of free-text answers: is it true, is it informative?

TrainedJudge        truthscope's own, trained offline on the paper's human labels
                    (`truthscope judge train`); compares the answer with the reference answers
LanguageModelJudge  any `LanguageModel`, prompted as GPT-judge / GPT-info were (P(" yes") over " yes"/" no")

Both are reported on a frozen question-held-out test split of the human labels (`judges.split`,
`truthscope judge eval`).
"""

from __future__ import annotations

from truthscope.judges.base import KINDS, THRESHOLD, Judge, JudgeItem
from truthscope.judges.classifier import TrainedJudge, judge_dir, train_judge
from truthscope.judges.lm_judge import LanguageModelJudge, judge_prompt


def load_judges(spec: str = "trained", embedder=None, **model_options) -> dict[str, Judge]:
    """{"truth": judge, "info": judge} from a spec: `trained` (the cached trained judges, sharing
    `embedder` when given), `none` (no judges: an empty dict), or `lm:MODEL` (one model, e.g. a local
    folder, prompted for both; `model_options` go to `load_model`)."""
    from truthscope.errors import TruthscopeError

    if spec == "none":
        return {}
    if spec == "trained":
        return {kind: TrainedJudge.load(kind, embedder=embedder) for kind in KINDS}
    if spec.startswith("lm:") and spec[3:]:
        from truthscope.models import load_model

        model = load_model(spec[3:], **model_options)
        return {kind: LanguageModelJudge(model, kind) for kind in KINDS}
    raise TruthscopeError(f"unknown judge {spec!r}; use trained, none, or lm:MODEL")


def load_scorers(spec: str = "trained", embed: bool = True, **model_options):
    """(judges, embedder): the judges of `spec` (a missing one fails here, before any work) and one
    MiniLM embedder, shared by the embed_* metrics and the trained judges, loaded only when one of
    them needs it (None otherwise). `model_options` (device, dtype, ...) go to an `lm:` judge."""
    from truthscope.scoring.similarity import SentenceEmbedder

    judges = load_judges(spec, **model_options)
    trained = [j for j in judges.values() if isinstance(j, TrainedJudge)]
    embedder = SentenceEmbedder(store=SentenceEmbedder.default_store()) if trained or embed else None
    for judge in trained:
        judge.embedder = embedder
    return judges, embedder


__all__ = [
    "KINDS",
    "THRESHOLD",
    "Judge",
    "JudgeItem",
    "LanguageModelJudge",
    "TrainedJudge",
    "judge_dir",
    "judge_prompt",
    "load_judges",
    "load_scorers",
    "train_judge",
]
