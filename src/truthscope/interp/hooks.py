"""One naming of places inside a network, mapped onto Hugging Face modules, and context managers
that read (`capture`) or change (`edit`) the activations there.

Canonical hook points (shapes as the hook sees them; `pos` is the positions of the current forward
pass, so with a key/value cache only the new tokens):

    embed                  # [batch, pos, d_model]  token embeddings (GPT-2: before position embeddings are added)
    blocks.{i}.resid_pre   # [batch, pos, d_model]  residual stream entering block i
    blocks.{i}.attn.heads  # [batch, pos, n_heads, d_head]  per-head attention result, input of the output projection
    blocks.{i}.attn.out    # [batch, pos, d_model]  what attention adds to the residual stream
    blocks.{i}.mlp.neurons # [batch, pos, d_mlp]  input of the MLP down projection: act(gate(x)) * up(x) when gated
    blocks.{i}.mlp.out     # [batch, pos, d_model]  what the MLP adds to the residual stream
    blocks.{i}.resid_post  # [batch, pos, d_model]  residual stream leaving block i

"What is added to the residual stream" differs per architecture: Gemma 3 normalises attention and
MLP outputs before adding them, so its `attn.out` / `mlp.out` are the outputs of those norms.

Every function takes the torch module (`HuggingFaceModel.model`). Hooks are registered on entry and
removed on exit, also when the body raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from truthscope.errors import TruthscopeError

SITES = ("resid_pre", "attn.heads", "attn.out", "mlp.neurons", "mlp.out", "resid_post")
_NAME = re.compile(r"blocks\.(\d+)\.(" + "|".join(re.escape(s) for s in SITES) + r")")


@dataclass(frozen=True)
class ArchSpec:
    """Where the canonical hook points live in one Hugging Face architecture. Paths are relative
    to the causal-LM module (`layers`, `embed`) or to one block (the rest)."""

    name: str
    model_types: tuple[str, ...]  # `config.model_type` values this spec covers
    layers: str
    embed: str
    attn_proj: str  # attention output projection: its input is `attn.heads`
    attn_out: str  # its output is `attn.out`
    mlp_proj: str  # MLP down projection: its input is `mlp.neurons`
    mlp_out: str  # its output is `mlp.out`


_LLAMA_LIKE = dict(
    layers="model.layers", embed="model.embed_tokens", attn_proj="self_attn.o_proj", attn_out="self_attn.o_proj",
    mlp_proj="mlp.down_proj", mlp_out="mlp",
)  # fmt: skip

ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec("Llama / SmolLM", ("llama", "mistral"), **_LLAMA_LIKE),
    ArchSpec("Qwen2", ("qwen2",), **_LLAMA_LIKE),
    ArchSpec(
        "Gemma 3", ("gemma3_text", "gemma3"), layers="model.layers", embed="model.embed_tokens",
        attn_proj="self_attn.o_proj", attn_out="post_attention_layernorm",
        mlp_proj="mlp.down_proj", mlp_out="post_feedforward_layernorm",
    ),
    ArchSpec(
        "GPT-2", ("gpt2",), layers="transformer.h", embed="transformer.wte",
        attn_proj="attn.c_proj", attn_out="attn.c_proj", mlp_proj="mlp.c_proj", mlp_out="mlp",
    ),
    ArchSpec(
        "GPT-NeoX", ("gpt_neox",), layers="gpt_neox.layers", embed="gpt_neox.embed_in",
        attn_proj="attention.dense", attn_out="attention.dense", mlp_proj="mlp.dense_4h_to_h", mlp_out="mlp",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Dimensions:
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    d_head: int


def architecture(module: torch.nn.Module) -> ArchSpec:
    """The spec for `module`'s architecture; a `TruthscopeError` naming the supported ones if none."""
    model_type = getattr(getattr(module, "config", None), "model_type", None)
    for spec in ARCHITECTURES:
        if model_type in spec.model_types:
            return spec
    supported = ", ".join(f"{s.name} ({'/'.join(s.model_types)})" for s in ARCHITECTURES)
    raise TruthscopeError(f"no hook points for model type {model_type!r}; supported: {supported}")


def n_layers(module: torch.nn.Module) -> int:
    return len(_blocks(module))


def dimensions(module: torch.nn.Module) -> Dimensions:
    spec = architecture(module)
    config: Any = module.config  # a transformers config: which fields it has depends on the architecture
    n_heads: int = getattr(config, "num_attention_heads", None) or config.n_head
    d_model: int = getattr(config, "hidden_size", None) or config.n_embd
    d_head: int = getattr(config, "head_dim", None) or d_model // n_heads
    down = _blocks(module)[0].get_submodule(spec.mlp_proj)
    # GPT-2's Conv1D stores its weight as [in, out]
    d_mlp = down.in_features if isinstance(down, torch.nn.Linear) else down.get_parameter("weight").shape[0]
    return Dimensions(n_layers(module), d_model, d_mlp, n_heads, d_head)


def hook_names(module: torch.nn.Module) -> list[str]:
    """Every hook point of `module`, in forward order."""
    return ["embed"] + [f"blocks.{i}.{site}" for i in range(n_layers(module)) for site in SITES]


@contextmanager
def capture(
    module: torch.nn.Module,
    names: Iterable[str] | Callable[[str], bool],
    *,
    detach: bool = True,
    all_passes: bool = False,
) -> Iterator[dict]:
    """Yield a dict filled during forward passes inside the block: name -> activation of the last
    pass (or, with `all_passes`, name -> list with one tensor per pass). `names` is a list of hook
    names or a filter on them. `detach=False` keeps the autograd graph (for gradients)."""
    selected = _select(module, names)
    store: dict = {}

    def recorder(name):
        def record(tensor):
            value = tensor.detach() if detach else tensor
            if all_passes:
                store.setdefault(name, []).append(value)
            else:
                store[name] = value
            return None  # leave the activation as it is

        return record

    with _hooked(module, {name: recorder(name) for name in selected}):
        yield store


@contextmanager
def edit(module: torch.nn.Module, edits: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """Replace activations inside the block: each `fn(activation) -> new activation` (same shape;
    an intervention object or any function). Several edits of one name apply in the given order."""
    for name in edits:
        _locate(module, name)  # fail before any hook is registered
    with _hooked(module, dict(edits)):
        yield


# --- interventions: small objects, each a function of the activation ------------------------------

Index = int | slice | Iterable[int] | torch.Tensor | None


@dataclass(frozen=True)
class Zero:
    """Set the selected units to zero. `index` selects along `dim` (the last: neurons, d_model;
    for `attn.heads` use dim=2 to select heads); `positions` along dim 1. None selects all."""

    index: Index = None
    positions: Index = None
    dim: int = -1

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return torch.where(_mask(t, self.index, self.dim, self.positions), t.new_zeros(()), t)


@dataclass(frozen=True)
class Scale:
    """Multiply the selected units by `factor`."""

    index: Index = None
    factor: float = 0.0
    positions: Index = None
    dim: int = -1

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return torch.where(_mask(t, self.index, self.dim, self.positions), t * self.factor, t)


@dataclass(frozen=True)
class Replace:
    """Set the selected units to `value` (a tensor broadcastable to the activation)."""

    value: torch.Tensor
    index: Index = None
    positions: Index = None
    dim: int = -1

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(self.value, dtype=t.dtype, device=t.device)
        return torch.where(_mask(t, self.index, self.dim, self.positions), value, t)


@dataclass(frozen=True)
class Add:
    """Add `alpha * vector` (broadcast over the leading dims, e.g. a [d_model] steering vector)."""

    vector: torch.Tensor
    alpha: float = 1.0
    positions: Index = None

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        shift = self.alpha * torch.as_tensor(self.vector, dtype=t.dtype, device=t.device)
        return torch.where(_mask(t, None, -1, self.positions), t + shift, t)


def _mask(t: torch.Tensor, index: Index, dim: int, positions: Index) -> torch.Tensor:
    """A boolean tensor broadcastable to `t`: True where `index` (along `dim`) and `positions`
    (along dim 1) both select. A mask, not in-place indexing, so it works on graph tensors."""
    mask = torch.ones((1,) * t.ndim, dtype=torch.bool, device=t.device)
    for d, sel in ((dim % t.ndim, index), (1, positions)):
        if sel is None:
            continue
        axis = torch.zeros(t.shape[d], dtype=torch.bool, device=t.device)
        axis[sel if isinstance(sel, int | slice | torch.Tensor) else list(sel)] = True
        shape = [1] * t.ndim
        shape[d] = t.shape[d]
        mask = mask & axis.view(shape)
    return mask


# --- plumbing: names -> (module, input or output, view) -------------------------------------------


def _blocks(module: torch.nn.Module) -> torch.nn.ModuleList:
    path = architecture(module).layers
    blocks = module.get_submodule(path)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise TruthscopeError(f"expected the blocks at {path!r} to be a ModuleList, got {type(blocks).__name__}")
    return blocks


def _select(module: torch.nn.Module, names: Iterable[str] | Callable[[str], bool]) -> list[str]:
    if callable(names):
        return [n for n in hook_names(module) if names(n)]
    names = list(names)
    for name in names:
        _locate(module, name)
    return names


def _locate(module: torch.nn.Module, name: str) -> tuple[torch.nn.Module, str]:
    """(submodule, "input" | "output" | "heads") for a canonical name."""
    spec = architecture(module)
    if name == "embed":
        return module.get_submodule(spec.embed), "output"
    match = _NAME.fullmatch(name)
    if not match:
        raise TruthscopeError(
            f"unknown hook point {name!r}; names are 'embed' or 'blocks.{{i}}.<site>', sites: {', '.join(SITES)}"
        )
    layer, site = int(match.group(1)), match.group(2)
    blocks = _blocks(module)
    if layer >= len(blocks):
        raise TruthscopeError(f"hook point {name!r}: the model has {len(blocks)} blocks (0..{len(blocks) - 1})")
    block = blocks[layer]
    return {
        "resid_pre": (block, "input"),
        "resid_post": (block, "output"),
        "attn.heads": (block.get_submodule(spec.attn_proj), "heads"),
        "attn.out": (block.get_submodule(spec.attn_out), "output"),
        "mlp.neurons": (block.get_submodule(spec.mlp_proj), "input"),
        "mlp.out": (block.get_submodule(spec.mlp_out), "output"),
    }[site]


@contextmanager
def _hooked(module: torch.nn.Module, fns: Mapping[str, Callable]) -> Iterator[None]:
    """Register one hook per name; `fn(activation)` returns a replacement or None (read only)."""
    n_heads = dimensions(module).n_heads if any(".attn.heads" in n for n in fns) else 0
    handles = []
    try:
        for name, fn in fns.items():
            target, where = _locate(module, name)
            if where == "output":
                handles.append(target.register_forward_hook(_output_hook(fn)))
            else:
                handles.append(
                    target.register_forward_pre_hook(
                        _input_hook(fn, n_heads if where == "heads" else 0), with_kwargs=True
                    )
                )
        yield
    finally:
        for handle in handles:
            handle.remove()


def _output_hook(fn):
    def hook(_module, _args, output):
        # blocks and attention modules of some versions return tuples: the activation comes first
        tensor = output[0] if isinstance(output, tuple) else output
        new = fn(tensor)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


def _input_hook(fn, n_heads: int):
    def hook(_module, args, kwargs):
        tensor = args[0] if args else kwargs["hidden_states"]
        view = tensor.unflatten(-1, (n_heads, -1)) if n_heads else tensor
        new = fn(view)
        if new is None:
            return None
        new = new.flatten(-2) if n_heads else new
        if args:
            return (new, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": new}

    return hook
