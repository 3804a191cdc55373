"""Steering along a truth direction, and the sweep that shows what it costs.

A `SteeringDirection` is a vector per hook point; `steering(module, direction, alpha)` adds
alpha * vector there at every position of every forward pass (prompt, answer and generated tokens),
through `interp.hooks.edit`, so the hooks are gone when the block exits, also after an exception.

    per layer   one vector on `blocks.{l}.resid_post`: a probe's unit direction
    per head    ITI-style (Li et al.): the K attention heads whose own activations best separate
                true from false answers each get their mass-mean direction, on `blocks.{l}.attn.heads`

Vectors are scaled to one standard deviation of the training activations along them, so alpha is in
"standard deviations" and comparable across layers, heads and models.

The sweep reports, per alpha: MC1/MC2 on held-out questions, the language-modelling loss on neutral
text and the KL divergence of the next-token distribution from the unsteered model on that text, and
for greedy generations the similarity to true versus false references (`scoring.similarity`), or the
judges' % true and % informative when `truthscope.judges` provides them. The trade-off curve is the
point: a setting that gains MC accuracy by wrecking the language model shows up as a loss spike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from truthscope.interp.hooks import Add, edit
from truthscope.interp.probes import fit_probe, grouped_split

# Neutral text for the language-modelling cost of steering: plain everyday prose written for this
# purpose, about nothing TruthfulQA asks, so a loss increase here is damage, not a changed opinion.
NEUTRAL_TEXTS = (
    "To make a pot of tea, first boil fresh water in a kettle. Warm the pot with a little hot water, pour it out, "
    "and add one spoonful of loose leaves for each cup. Let it steep for three to five minutes before pouring.",
    "The library opens at nine in the morning on weekdays and at ten on Saturdays. Books can be borrowed for three "
    "weeks and renewed twice, online or at the front desk, unless another reader has reserved them.",
    "She packed a small bag for the weekend: two shirts, a sweater, a pair of walking shoes and a paperback novel. "
    "The train left on time, and by noon she could see the hills rising beyond the river.",
    "A bicycle chain should be cleaned and oiled every few hundred miles. Wipe off the old grease with a rag, apply "
    "a drop of oil to each link while turning the pedals backwards, and wipe away the excess.",
    "The meeting was moved from Tuesday to Thursday afternoon because several people were travelling. The agenda "
    "covers the budget for next year, the new office layout and the schedule for the summer holidays.",
    "In spring the garden fills with tulips and daffodils. By June the roses begin to bloom along the fence, and "
    "the vegetable beds need watering every evening when the weather is dry.",
    "To change a light bulb, switch off the power and let the old bulb cool. Unscrew it gently, check that the new "
    "bulb has the same fitting and wattage, screw it in until it is firm, and switch the power back on.",
    "The recipe calls for two cups of flour, one cup of milk, two eggs and a pinch of salt. Whisk everything into a "
    "smooth batter and let it rest for half an hour before cooking the pancakes in a hot pan.",
)


@dataclass(frozen=True)
class SteeringDirection:
    vectors: dict[str, np.ndarray]  # hook name -> vector added there ([d_model], or [n_heads, d_head])
    description: str

    @property
    def hooks(self) -> list[str]:
        return list(self.vectors)


@contextmanager
def steering(module: torch.nn.Module, direction: SteeringDirection, alpha: float) -> Iterator[None]:
    """Add alpha * each vector at its hook point inside the block (alpha = 0 changes nothing)."""
    edits = {
        hook: Add(torch.as_tensor(vector, dtype=torch.float32), alpha) for hook, vector in direction.vectors.items()
    }
    with edit(module, edits):
        yield


def layer_direction(
    method: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, hook: str, seed: int = 0
) -> SteeringDirection:
    """A probe's unit direction at one hook, scaled to the std of the training items along it."""
    unit = fit_probe(method, x, y, groups, seed).direction()
    sigma = float((np.asarray(x, dtype=np.float64) @ unit).std())
    return SteeringDirection({hook: unit * sigma}, f"{method} direction at {hook}, 1 alpha = {sigma:.3g} (1 std)")


def head_direction(
    heads: dict[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    top_k: int,
    seed: int = 0,
    val_fraction: float = 0.25,
) -> tuple[SteeringDirection, list[dict]]:
    """ITI: rank every head by the validation accuracy of a logistic probe on its activations
    (grouped inner split of the training items), keep the top K, and give each its mass-mean
    direction scaled to one std. `heads` maps `blocks.{l}.attn.heads` -> [n, n_heads, d_head].
    Returns the direction and the ranking (layer, head, val_accuracy), best first."""
    from truthscope.interp.probes import accuracy

    inner, val = grouped_split(groups, val_fraction, seed + 1)
    ranking = []
    for hook, acts in heads.items():
        layer = int(hook.split(".")[1])
        for h in range(acts.shape[1]):
            probe = fit_probe("logistic", acts[inner, h], y[inner], groups[inner], seed)
            ranking.append(
                {"hook": hook, "layer": layer, "head": h, "val_accuracy": accuracy(probe.scores(acts[val, h]), y[val])}
            )
    ranking.sort(key=lambda r: -r["val_accuracy"])
    vectors: dict[str, np.ndarray] = {}
    for r in ranking[:top_k]:
        acts = heads[r["hook"]][:, r["head"]].astype(np.float64)
        shift = acts[y == 1].mean(axis=0) - acts[y == 0].mean(axis=0)
        unit = shift / np.linalg.norm(shift)
        vector = vectors.setdefault(r["hook"], np.zeros(heads[r["hook"]].shape[1:]))
        vector[r["head"]] = unit * (acts @ unit).std()
    return SteeringDirection(
        vectors, f"ITI: mass-mean directions of the top {top_k} heads, 1 alpha = 1 std per head"
    ), ranking


# --- costs on neutral text -----------------------------------------------------------------------


def neutral_logprobs(model, texts: Sequence[str] = NEUTRAL_TEXTS) -> list[torch.Tensor]:
    """Per text, the next-token log-distributions [len - 1, vocab] at each position (one pass per text)."""
    out = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([model.tokenizer(text).input_ids], device=model.device)
            logits = model.model(input_ids=ids).logits[0, :-1].float()
            out.append(torch.log_softmax(logits, dim=-1).cpu())
    return out


def language_model_costs(
    model, steered: list[torch.Tensor], baseline: list[torch.Tensor], texts: Sequence[str] = NEUTRAL_TEXTS
) -> dict:
    """Mean next-token loss (nats) of the steered model on the texts, and mean KL(unsteered || steered)."""
    losses, kls = [], []
    for text, lp, base in zip(texts, steered, baseline):
        target = torch.tensor(model.tokenizer(text).input_ids[1:])
        losses.append(-lp.gather(1, target[:, None])[:, 0])
        kls.append((base.exp() * (base - lp)).sum(dim=-1))
    return {
        "lm_loss": float(torch.cat(losses).mean()),
        "kl": float(torch.cat(kls).mean()),
        "tokens": int(sum(len(x) for x in losses)),
    }


# --- the sweep -----------------------------------------------------------------------------------

GENERATION_STOP = ("\n\n", "\nQ:")


def steering_sweep(
    model,
    questions: Sequence,
    presets: dict[str, str],
    direction: SteeringDirection,
    alphas: Sequence[float],
    run,
    *,
    protocol: str = "harness",
    preset: str = "qa",
    max_new_tokens: int = 40,
    judges: dict | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Score `questions` under each alpha (records id = alpha index * len(questions) + position,
    resumable per alpha); return the per-alpha summary. `max_new_tokens=0` skips generation;
    `judges` ({"truth": ..., "info": ...} from `truthscope.judges.load_judges`) score the
    generations when given, similarity to the references always does."""
    from tqdm import tqdm

    from truthscope.data.presets import question_prompt
    from truthscope.models.base import GenerationRequest
    from truthscope.scoring.intervals import bootstrap_mean
    from truthscope.scoring.similarity import references_for, similarity_scores
    from truthscope.tasks.multiple_choice import answer_sets, requests_for, score_question

    questions = list(questions)
    baseline = neutral_logprobs(model)
    sets = {q.id: [s for s in answer_sets(q, protocol, preset, presets, seed) if s.name != "mc0"] for q in questions}
    requests = list(dict.fromkeys(r for q in questions for r in requests_for(sets[q.id])))
    per_alpha = []
    for a_index, alpha in enumerate(tqdm(alphas, desc=f"steer {model.name}", disable=not progress)):
        ids = [a_index * len(questions) + i for i in range(len(questions))]
        with steering(model.model, direction, alpha):
            costs = language_model_costs(model, neutral_logprobs(model), baseline)
            if not all(run.done(i) for i in ids):
                logprobs = {r: res.logprob for r, res in zip(requests, model.loglikelihood(requests))}
                prompts = [
                    GenerationRequest(question_prompt(q.question, preset, presets), GENERATION_STOP, max_new_tokens)
                    for q in questions
                ]
                answers = [a.strip() for a in model.generate(prompts)] if max_new_tokens else [None] * len(questions)
        if not all(run.done(i) for i in ids):
            records = []
            similarity = (
                similarity_scores(answers, [references_for(q) for q in questions])
                if max_new_tokens
                else [{}] * len(questions)
            )
            judged = _judge(judges, questions, answers) if judges and max_new_tokens else [{}] * len(questions)
            for i, q, answer, sim, judge in zip(ids, questions, answers, similarity, judged):
                scores = score_question(sets[q.id], logprobs)
                # a cheap, judge-free view of informativeness: an answer that is not a refusal
                answered = None if answer is None else float(bool(answer) and "no comment" not in answer.lower())
                records.append(
                    {
                        "id": i,
                        "alpha": alpha,
                        "question_id": q.id,
                        "category": q.category,
                        "mc1": scores["mc1"],
                        "mc2": scores["mc2"],
                        "answer": answer,
                        "answered": answered,
                        **sim,
                        **judge,
                    }
                )
            run.append(records)
        rows = [run.records[i] for i in ids]
        entry = {"alpha": alpha, **costs}
        for metric in ("mc1", "mc2", "true", "info", "true_and_info", "bleu_acc", "rouge1_acc", "answered"):
            values = [r[metric] for r in rows if r.get(metric) is not None]
            if values:
                entry[metric] = bootstrap_mean(values, seed=seed)
        per_alpha.append(entry)
    return {
        "alphas": per_alpha,
        "direction": direction.description,
        "questions": len(questions),
        "neutral_tokens": per_alpha[0]["tokens"],
    }


def _judge(judges: dict, questions: Sequence, answers: Sequence[str]) -> list[dict]:
    from truthscope.judges import THRESHOLD, JudgeItem
    from truthscope.scoring.similarity import references_for

    items = [JudgeItem(q.question, a, references_for(q)) for q, a in zip(questions, answers)]
    truth, info = judges["truth"].score(items), judges["info"].score(items)
    return [
        {
            "p_true": t,
            "p_info": i,
            "true": float(t > THRESHOLD),
            "info": float(i > THRESHOLD),
            "true_and_info": float(t > THRESHOLD and i > THRESHOLD),
        }
        for t, i in zip(truth, info)
    ]
