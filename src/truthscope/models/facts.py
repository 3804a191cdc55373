"""Facts about a loaded model that a run records: parameter counts, family, dtype, quantisation."""

from __future__ import annotations

from truthscope.runlog import ModelFacts


def model_facts(lm, spec: str, label: str | None = None) -> ModelFacts:
    """Read from the torch module behind `lm` where there is one (mock and API models: counts None).

    Non-embedding parameters leave out the input token embedding and an untied output embedding,
    the convention of scaling-law work (Kaplan et al. 2020): two models with different vocabularies
    but the same body have the same non-embedding count."""
    from truthscope.models.bundled import BUNDLED

    module = getattr(lm, "model", None)
    params = non_embedding = family = dtype = None
    if module is not None and hasattr(module, "parameters"):
        params = int(sum(p.numel() for p in module.parameters()))
        embedded = {id(p): p.numel() for p in _embedding_parameters(module)}
        non_embedding = params - int(sum(embedded.values()))
        family = getattr(getattr(module, "config", None), "model_type", None)
        dtype = str(next(module.parameters()).dtype).removeprefix("torch.")
    bundled = BUNDLED.get(spec)
    return ModelFacts(
        spec=spec,
        label=label or getattr(lm, "name", spec),
        params=params,
        non_embedding_params=non_embedding,
        family=family,
        dtype=dtype,
        quantisation=bundled.quantisation if bundled else None,
        description=bundled.description if bundled else None,
    )


def _embedding_parameters(module) -> list:
    out = []
    seen = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        layer = getattr(module, getter, lambda: None)()
        weight = getattr(layer, "weight", None)
        if weight is not None and id(weight) not in seen:  # tied weights count once
            seen.add(id(weight))
            out.append(weight)
    return out
