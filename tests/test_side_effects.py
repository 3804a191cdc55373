"""Side effects on neutral text: the unmodified model costs nothing, the loss is the plain mean
next-token NLL over every token of the corpus, and an edit shows up in both numbers."""

from __future__ import annotations

import pytest
import torch

from truthscope.interp.hooks import Zero, edit
from truthscope.interp.side_effects import (
    NEUTRAL_CORPUS,
    corpus_tokens,
    neutral_baseline,
    neutral_costs,
)


@pytest.fixture(scope="module")
def lm():
    from tiny_models import tiny_llama, tiny_tokenizer

    from truthscope.models.huggingface import HuggingFaceModel

    tokenizer = tiny_tokenizer()
    return HuggingFaceModel(tiny_llama(len(tokenizer)), tokenizer, "tiny")


TEXTS = NEUTRAL_CORPUS[:4]


def test_the_corpus_is_large_and_varied():
    words = " ".join(NEUTRAL_CORPUS).split()
    assert len(words) >= 2000 and len(set(NEUTRAL_CORPUS)) == len(NEUTRAL_CORPUS) >= 30


def test_the_unmodified_model_has_kl_zero_and_its_loss_is_the_direct_mean(lm):
    costs = neutral_costs(lm, texts=TEXTS)
    assert costs["kl"] == 0.0
    nll, tokens = [], 0
    with torch.no_grad():
        for text in TEXTS:
            ids = torch.tensor([lm.tokenizer(text).input_ids])
            logits = lm.model(input_ids=ids).logits[0, :-1]
            nll.append(torch.nn.functional.cross_entropy(logits.double(), ids[0, 1:], reduction="none"))
            tokens += ids.shape[1] - 1
    assert costs["tokens"] == tokens == corpus_tokens(lm, TEXTS)
    assert costs["lm_loss"] == pytest.approx(float(torch.cat(nll).mean()), rel=1e-5)  # token-weighted


def test_an_edit_costs_loss_and_kl_in_all_three_spellings(lm):
    edits = {"blocks.1.mlp.neurons": Zero(index=list(range(64)))}
    as_dict = neutral_costs(lm, edits, texts=TEXTS)
    as_factory = neutral_costs(lm, lambda: edit(lm.model, edits), texts=TEXTS)
    assert as_dict == as_factory and as_dict["kl"] > 1e-3
    # the baseline is cached; without keeping distributions the unmodified pass is rerun, same numbers
    assert neutral_baseline(lm, TEXTS) is neutral_baseline(lm, TEXTS)
    lean = neutral_baseline(lm, TEXTS, max_cached_bytes=0, refresh=True)
    assert lean.logprobs is None
    again = neutral_costs(lm, edits, lean, texts=TEXTS)
    assert again["kl"] == pytest.approx(as_dict["kl"], rel=1e-6)
    assert again["lm_loss"] == pytest.approx(as_dict["lm_loss"], rel=1e-6)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in lm.model.modules())
