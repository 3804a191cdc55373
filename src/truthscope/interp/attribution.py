"""Integrated gradients on MLP neuron activations (`blocks.{i}.mlp.neurons`) at a prompt's last token.

For layer l with clean activation a (at the last prompt position) and baseline b (zero by default),
the attribution of neuron i is

    IG_l,i = (a_i - b_i) * mean_k  d f / d z_i  at  z = b + alpha_k (a - b),   alpha_k = (k + 1/2) / m

where z replaces layer l's activation and every other layer computes as usual (the per-layer path of
Dai et al.'s knowledge neurons, which the Truth Neurons paper uses). The midpoint rule makes the
completeness error O(1/m^2): sum_i IG_l,i ~ f(a) - f(layer l at b).

The target f is a weighted sum of next-token probabilities after the prompt, f = sum_t w_t P(t):
{answer: 1} is "the probability of the answer"; {correct: 1, incorrect: -1} gives
Attr(n | correct) - Attr(n | incorrect) in one pass, since integrated gradients are linear in f.

Why it is fast (`integrated_gradients`): only the last position is changed, so the prompt before it
is run once and its key/value cache shared; then one batch holds m step rows (and one baseline row)
for each of several layers, each row editing only its own layer, and a single backward pass gives
the gradients of all steps of all neurons of those layers. Below the lowest layer of a batch all rows
are identical, so the pass runs there on one row and fans out at that layer (about half the work of
running every row through every layer). Weights never get gradients, only the step activations.
Gemma 3 caveat: it normalises the MLP output (`post_feedforward_layernorm`) before adding it to the
residual stream, so scaling a whole layer's neurons by alpha > 0 barely changes the output until
alpha is ~0. Along the per-layer path f is then nearly constant, jumping at the baseline: the
attributions are gradient x activation times sum_k 1/(m alpha_k), their sum is ~0 and completeness
fails (it is reported per question). Neuron rankings and the t-test are unaffected by that common
factor; the absolute numbers are not comparable with other architectures.

`naive_integrated_gradients` is the obvious loop (one full forward and backward per layer per step),
kept as the reference the fast one is tested and benchmarked against.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from truthscope.interp.hooks import dimensions, edit

# the key/value cache plumbing of the Hugging Face backend (transformers 4.5x and 5.x)
from truthscope.models.kv_cache import cache_tensors, make_cache, output_cache, repeat_cache

DEFAULT_STEPS = 20


@dataclass(frozen=True)
class NeuronAttribution:
    scores: torch.Tensor  # [n_layers, d_mlp]  IG of f for each neuron of each attributed layer
    layers: tuple[int, ...]  # the layers, in the order of `scores` rows
    f_input: float  # f of the unchanged model
    f_baseline: torch.Tensor  # [n_layers]  f with that layer's neurons at the baseline
    activations: torch.Tensor  # [n_layers, d_mlp]  clean activations at the last prompt position

    @property
    def completeness_error(self) -> torch.Tensor:
        """Per layer: sum of attributions minus (f(input) - f(baseline)); ~0 when m is large enough."""
        return self.scores.sum(dim=1) - (self.f_input - self.f_baseline)


def target_value(logits: torch.Tensor, target: Mapping[int, float]) -> torch.Tensor:
    """f = sum_t w_t P(t) from next-token logits [..., vocab]."""
    probs = torch.softmax(logits.float(), dim=-1)
    ids = torch.tensor(list(target), device=logits.device)
    weights = torch.tensor(list(target.values()), dtype=probs.dtype, device=logits.device)
    return (probs[..., ids] * weights).sum(-1)


def step_alphas(steps: int) -> torch.Tensor:
    return (torch.arange(steps, dtype=torch.float32) + 0.5) / steps


def integrated_gradients(
    module: torch.nn.Module,
    prompt_ids: Sequence[int],
    target: Mapping[int, float],
    *,
    layers: Sequence[int] | None = None,
    steps: int = DEFAULT_STEPS,
    max_rows: int = 128,
) -> NeuronAttribution:
    """IG of `target` for every neuron of `layers` (default: all) at the last token of `prompt_ids`.
    `max_rows` bounds the rows of one forward/backward pass (layers x (steps + 1)); more layers
    per pass is faster and takes more memory."""
    layers = tuple(range(dimensions(module).n_layers)) if layers is None else tuple(layers)
    device = next(module.parameters()).device
    ids = torch.tensor([list(prompt_ids)], device=device)
    position = ids.shape[1] - 1
    with torch.no_grad():
        prefix = output_cache(module(input_ids=ids[:, :-1], use_cache=True)) if ids.shape[1] > 1 else None
        clean, f_input = _clean_last_token(module, ids[:, -1:], prefix, position, target, layers)

    per_pass = max(1, max_rows // (steps + 1))
    scores, f_baseline = [], []
    for start in range(0, len(layers), per_pass):
        chunk = layers[start : start + per_pass]
        s, fb = _attribute_chunk(module, ids[:, -1:], prefix, position, target, chunk, clean, steps)
        scores.append(s)
        f_baseline.append(fb)
    return NeuronAttribution(
        scores=torch.cat(scores),
        layers=layers,
        f_input=f_input,
        f_baseline=torch.cat(f_baseline),
        activations=torch.stack([clean[layer] for layer in layers]),
    )


def _clean_last_token(module, last, prefix, position, target, layers):
    from truthscope.interp.hooks import capture

    names = {f"blocks.{layer}.mlp.neurons": layer for layer in layers}
    with capture(module, list(names)) as cache:
        logits = _last_token_logits(module, last, repeat_cache(prefix, 1, module.config), position)
    clean = {layer: cache[name][0, -1].float() for name, layer in names.items()}
    return clean, float(target_value(logits[0], target))


def _last_token_logits(module, last: torch.Tensor, past, position: int) -> torch.Tensor:
    """Logits after the last prompt token, on top of the prefix cache. The position is explicit:
    a rebuilt sliding-window cache (Gemma 3) under-reports its length, which would shift RoPE."""
    # transformers 5 renamed `past_key_values` to `cache`
    name = "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
    kwargs = {name: past} if past is not None else {}
    positions = torch.full_like(last, position)
    return module(input_ids=last, position_ids=positions, use_cache=past is not None, **kwargs).logits[:, -1]


def _attribute_chunk(module, last, prefix, position, target, chunk, clean, steps):
    """One forward and one backward for `chunk` layers: rows [layer j: m step rows, 1 baseline row].

    Below the chunk's lowest layer every row would compute the same clean values, so the pass runs
    there on one row and fans out to all rows at that layer's input (its cache rows likewise)."""
    alphas = torch.cat([step_alphas(steps), torch.zeros(1)]).to(last.device)
    width, first = steps + 1, min(chunk)
    n_rows = width * len(chunk)
    leaves = {layer: (alphas[:, None] * clean[layer][None, :]).requires_grad_(True) for layer in chunk}

    def replace_rows(j, layer):
        rows = slice(j * width, (j + 1) * width)

        def fn(t):
            new = t.clone()
            new[rows, -1] = leaves[layer].to(t.dtype)
            return new

        return fn

    def fan_out(t):
        return t.expand(n_rows, *t.shape[1:]).contiguous()

    edits = {f"blocks.{first}.resid_pre": fan_out}
    edits.update({f"blocks.{layer}.mlp.neurons": replace_rows(j, layer) for j, layer in enumerate(chunk)})
    with torch.enable_grad(), edit(module, edits):
        past = _fanned_cache(prefix, first, n_rows, module.config)
        logits = _last_token_logits(module, last, past, position)
        f = target_value(logits, target)  # [n_rows]
        grads = torch.autograd.grad(f.sum(), [leaves[layer] for layer in chunk])
    f = f.detach().view(len(chunk), width)
    scores = torch.stack([clean[layer] * g[:steps].mean(0) for layer, g in zip(chunk, grads, strict=True)])
    return scores, f[:, steps]


def _fanned_cache(prefix, first: int, n_rows: int, config):
    """The prefix cache with one row for layers below `first` and `n_rows` rows from there on."""
    if prefix is None:
        return None
    tensors = [
        (k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1)) if i >= first else (k, v)
        for i, (k, v) in enumerate(cache_tensors(prefix))
    ]
    return make_cache(tensors, config)


def naive_integrated_gradients(
    module: torch.nn.Module,
    prompt_ids: Sequence[int],
    target: Mapping[int, float],
    *,
    layers: Sequence[int] | None = None,
    steps: int = DEFAULT_STEPS,
) -> torch.Tensor:
    """The same attributions [n_layers, d_mlp], one full forward and backward per layer per step."""
    layers = tuple(range(dimensions(module).n_layers)) if layers is None else tuple(layers)
    ids = torch.tensor([list(prompt_ids)], device=next(module.parameters()).device)
    from truthscope.interp.hooks import capture

    with torch.no_grad(), capture(module, [f"blocks.{layer}.mlp.neurons" for layer in layers]) as cache:
        module(input_ids=ids)
    rows = []
    for layer in layers:
        clean = cache[f"blocks.{layer}.mlp.neurons"][0, -1].float()
        total = torch.zeros_like(clean)
        for alpha in step_alphas(steps).tolist():
            z = (alpha * clean).requires_grad_(True)

            def fn(t, z=z):
                new = t.clone()
                new[0, -1] = z.to(t.dtype)
                return new

            with torch.enable_grad(), edit(module, {f"blocks.{layer}.mlp.neurons": fn}):
                f = target_value(module(input_ids=ids).logits[0, -1], target)
                (grad,) = torch.autograd.grad(f, [z])
            total += grad
        rows.append(clean * total / steps)
    return torch.stack(rows)
