"""Hook points on tiny random models of every supported architecture: names, shapes, that the
mapping is the right one (the residual stream decomposes into what the hooks see), edits, and that
hooks never outlive their context."""

from __future__ import annotations

import pytest
import torch

from truthscope.errors import TruthscopeError
from truthscope.interp import hooks
from truthscope.interp.hooks import Add, Replace, Scale, Zero, capture, dimensions, edit, hook_names, n_layers

VOCAB = 97


def tiny(arch: str, seed: int = 0) -> torch.nn.Module:
    """A 3-layer random model of `arch`, weights scaled so activations are far from zero."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if arch == "llama":
        config = tf.LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                                num_key_value_heads=2, **common)  # fmt: skip
        model = tf.LlamaForCausalLM(config)
    elif arch == "qwen2":
        config = tf.Qwen2Config(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                                num_key_value_heads=2, **common)  # fmt: skip
        model = tf.Qwen2ForCausalLM(config)
    elif arch == "gemma3":
        config = tf.Gemma3TextConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                                     num_key_value_heads=2, head_dim=8, sliding_window=4, **common)  # fmt: skip
        model = tf.Gemma3ForCausalLM(config)
    elif arch == "gpt2":
        config = tf.GPT2Config(n_embd=32, n_layer=3, n_head=4, n_inner=48, resid_pdrop=0.0, embd_pdrop=0.0,
                               attn_pdrop=0.0, **common)  # fmt: skip
        model = tf.GPT2LMHeadModel(config)
    elif arch == "gpt_neox":
        config = tf.GPTNeoXConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                                  **common)  # fmt: skip
        model = tf.GPTNeoXForCausalLM(config)
    else:
        raise ValueError(arch)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0 if p.ndim > 1 else 1.0)
    return model.eval().requires_grad_(False)


ARCHS = ["llama", "qwen2", "gemma3", "gpt2", "gpt_neox"]
IDS = torch.tensor([[1, 5, 9, 14, 3, 22, 40], [1, 7, 7, 60, 12, 11, 8]])


def no_hooks_left(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("arch", ARCHS)
def test_every_hook_point_has_its_documented_shape(arch):
    model = tiny(arch)
    dims = dimensions(model)
    assert (dims.n_layers, dims.d_model, dims.d_mlp, dims.n_heads, dims.d_head) == (3, 32, 48, 4, 8)
    names = hook_names(model)
    assert len(names) == 1 + 3 * len(hooks.SITES) and n_layers(model) == 3
    with capture(model, names) as cache:
        model(IDS)
    b, p = IDS.shape
    for name in names:
        expected = {"neurons": (b, p, 48), "heads": (b, p, 4, 8)}.get(name.rsplit(".", 1)[-1], (b, p, 32))
        assert tuple(cache[name].shape) == expected, name
    assert no_hooks_left(model)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_residual_stream_is_the_sum_of_what_attention_and_mlp_add(arch):
    """Checks the mapping itself: a wrong module for attn.out / mlp.out breaks this identity."""
    model = tiny(arch)
    with capture(model, lambda n: n.startswith("blocks.")) as cache:
        model(IDS)
    for i in range(3):
        pre, post = cache[f"blocks.{i}.resid_pre"], cache[f"blocks.{i}.resid_post"]
        total = pre + cache[f"blocks.{i}.attn.out"] + cache[f"blocks.{i}.mlp.out"]
        torch.testing.assert_close(post, total, rtol=1e-4, atol=1e-4)
        if i:
            torch.testing.assert_close(pre, cache[f"blocks.{i - 1}.resid_post"])


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_neurons_and_heads_are_the_inputs_of_the_output_projections(arch):
    model = tiny(arch)
    block = model.model.layers[1]
    with capture(model, ["embed", "blocks.0.resid_pre", "blocks.1.mlp.neurons", "blocks.1.attn.heads"]) as cache:
        model(IDS)
    torch.testing.assert_close(cache["embed"], cache["blocks.0.resid_pre"])
    neurons, heads = cache["blocks.1.mlp.neurons"], cache["blocks.1.attn.heads"]
    with capture(model, ["blocks.1.mlp.out", "blocks.1.attn.out", "blocks.1.resid_pre"]) as out:
        model(IDS)
    if arch == "llama":
        torch.testing.assert_close(block.mlp.down_proj(neurons), out["blocks.1.mlp.out"])
        torch.testing.assert_close(block.self_attn.o_proj(heads.flatten(-2)), out["blocks.1.attn.out"])
    # gated MLP: neurons = act(gate(x)) * up(x) of the normalised residual stream
    mlp = block.mlp
    norm = block.pre_feedforward_layernorm if arch == "gemma3" else block.post_attention_layernorm
    with capture(model, ["blocks.1.attn.out"]) as attn:
        model(IDS)
    x = norm(out["blocks.1.resid_pre"] + attn["blocks.1.attn.out"])
    torch.testing.assert_close(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x), neurons, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_zeroing_every_neuron_silences_the_mlp(arch):
    model = tiny(arch)
    with edit(model, {"blocks.2.mlp.neurons": Zero()}), capture(model, ["blocks.2.mlp.out"]) as cache:
        edited = model(IDS).logits
    down = model.get_submodule(hooks.architecture(model).layers)[2].get_submodule(hooks.architecture(model).mlp_proj)
    bias = down.bias if getattr(down, "bias", None) is not None else torch.zeros(32)
    if arch != "gemma3":  # Gemma normalises the MLP output, so zero in is not zero out
        torch.testing.assert_close(cache["blocks.2.mlp.out"], bias.expand_as(cache["blocks.2.mlp.out"]))
    assert not torch.allclose(edited, model(IDS).logits)
    assert no_hooks_left(model)


def test_hooks_are_removed_after_an_exception():
    model = tiny("llama")
    clean = model(IDS).logits
    scaled = {"blocks.0.mlp.neurons": Scale(factor=3.0)}
    with pytest.raises(RuntimeError, match="boom"), capture(model, hook_names(model)), edit(model, scaled):
        model(IDS)
        raise RuntimeError("boom")
    assert no_hooks_left(model)

    def explode(t):
        raise ValueError("inside the hook")

    with pytest.raises(ValueError), edit(model, {"blocks.1.resid_post": explode}):
        model(IDS)
    assert no_hooks_left(model)
    torch.testing.assert_close(model(IDS).logits, clean)


def test_an_unknown_name_fails_before_any_hook_is_registered():
    model = tiny("llama")
    edits = {"blocks.0.mlp.neurons": Zero(), "blocks.7.mlp.neurons": Zero()}
    with pytest.raises(TruthscopeError, match="3 blocks"), edit(model, edits):
        pass
    with pytest.raises(TruthscopeError, match="unknown hook point"), capture(model, ["blocks.0.mlp.hook_post"]):
        pass
    assert no_hooks_left(model)


def test_an_unsupported_architecture_names_the_supported_ones():
    import transformers as tf

    model = tf.BertModel(
        tf.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=48)
    )
    with pytest.raises(TruthscopeError, match="'bert'.*Llama.*Qwen2.*Gemma 3.*GPT-2.*GPT-NeoX"):
        hooks.architecture(model)


def test_interventions_touch_only_the_selected_units_and_positions():
    t = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4) + 1
    z = Zero(index=[1, 3], positions=-1)(t)
    assert (
        (z[:, -1, [1, 3]] == 0).all()
        and (z[:, :-1] == t[:, :-1]).all()
        and (z[:, -1, [0, 2]] == t[:, -1, [0, 2]]).all()
    )
    s = Scale(index=2, factor=0.5)(t)
    assert torch.equal(s[..., 2], t[..., 2] * 0.5) and torch.equal(s[..., :2], t[..., :2])
    r = Replace(torch.tensor(-7.0), index=slice(0, 2))(t)
    assert (r[..., :2] == -7).all() and torch.equal(r[..., 2:], t[..., 2:])
    a = Add(torch.ones(4), alpha=2.0, positions=[0, 2])(t)
    assert torch.equal(a[:, [0, 2]], t[:, [0, 2]] + 2) and torch.equal(a[:, 1], t[:, 1])
    heads = torch.ones(1, 2, 4, 8)
    assert Zero(index=1, dim=2)(heads)[0, :, 1].abs().sum() == 0 and Zero(index=1, dim=2)(heads).sum() == 2 * 3 * 8


def test_an_edit_of_heads_changes_only_that_head():
    model = tiny("llama")
    with edit(model, {"blocks.1.attn.heads": Zero(index=2, dim=2)}), capture(model, ["blocks.1.attn.heads"]) as cache:
        model(IDS)
    with capture(model, ["blocks.1.attn.heads"]) as clean:
        model(IDS)
    # the capture hook was registered after the edit, so it sees the edited activation
    assert cache["blocks.1.attn.heads"][:, :, 2].abs().max() == 0
    torch.testing.assert_close(
        cache["blocks.1.attn.heads"][:, :, [0, 1, 3]], clean["blocks.1.attn.heads"][:, :, [0, 1, 3]]
    )


def test_capture_keeps_the_graph_and_every_pass_on_request():
    model = tiny("llama")
    with capture(model, ["blocks.0.mlp.neurons"], detach=False, all_passes=True) as cache:
        model(IDS[:, :4])
        model(IDS)
    first, second = cache["blocks.0.mlp.neurons"]
    assert first.shape[1] == 4 and second.shape[1] == 7
    with torch.enable_grad():
        emb = model.model.embed_tokens.weight.clone().requires_grad_(True)
        with capture(model, ["blocks.0.mlp.neurons"], detach=False) as cache:
            model(inputs_embeds=emb[IDS])
        cache["blocks.0.mlp.neurons"].sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_edits_act_inside_the_kv_cached_loglikelihood(tiny_model_dir):
    """`HuggingFaceModel.loglikelihood` runs prefix, context and continuation passes with a cache:
    an edit must apply to every one of them, giving what one full edited pass gives."""
    from truthscope.models import LoglikelihoodRequest, load_model

    lm = load_model(str(tiny_model_dir), device="cpu")
    requests = [LoglikelihoodRequest("Q: Why do veins appear blue?\nA:", " Veins appear blue."),
                LoglikelihoodRequest("Q: Why do veins appear blue?\nA:", " Nothing happens.")]  # fmt: skip
    neurons = Zero(index=list(range(0, 128, 3)))
    with edit(lm.model, {"blocks.1.mlp.neurons": neurons}):
        cached = [r.logprob for r in lm.loglikelihood(requests)]
    plain = [r.logprob for r in lm.loglikelihood(requests)]
    for request, got, clean in zip(requests, cached, plain, strict=True):
        ctx, cont = lm.encode_pair(request.context, request.continuation)
        ids = torch.tensor([ctx + cont])
        with edit(lm.model, {"blocks.1.mlp.neurons": neurons}):
            logprobs = torch.log_softmax(lm.model(ids).logits[0, len(ctx) - 1 : -1], -1)
        expected = logprobs.gather(1, torch.tensor(cont)[:, None]).sum().item()
        assert got == pytest.approx(expected, abs=1e-3)
        assert got != pytest.approx(clean, abs=1e-3)
