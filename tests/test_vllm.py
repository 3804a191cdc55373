"""`vllm:` backend, in process, on the CPU build of vLLM and the bundled SmolLM2 (fp32).

vLLM lives in its own environment (scripts/install_vllm.sh, `.venv-vllm`). Under a Python without
vLLM, `test_in_the_vllm_environment` runs this file with that environment's Python (so a plain
`python -m pytest` runs the engine tests whenever the environment exists), and only where it is
absent do they skip, saying so. With TRUTHSCOPE_REQUIRE_ENGINES=1 (CI) a missing environment fails.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from truthscope.errors import TruthscopeError
from truthscope.models.base import GenerationRequest, LoglikelihoodRequest
from truthscope.models.vllm import parse_spec

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("TRUTHSCOPE_VLLM_VENV", REPO / ".venv-vllm")) / "bin" / "python"
WHY = f"no vLLM environment at {VLLM_PYTHON.parent.parent}: bash scripts/install_vllm.sh"


def test_spec_options_are_parsed_and_checked():
    assert parse_spec("vllm:smollm2-135m") == ("smollm2-135m", {})
    target, options = parse_spec("vllm:org/model?tensor_parallel_size=2&gpu_memory_utilization=0.8&enforce_eager=1")
    assert target == "org/model"
    assert options == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8, "enforce_eager": True}
    with pytest.raises(TruthscopeError, match="unknown vLLM option"):
        parse_spec("vllm:m?tp=2")
    with pytest.raises(TruthscopeError, match="not a valid value"):
        parse_spec("vllm:m?tensor_parallel_size=two")
    with pytest.raises(TruthscopeError, match="not a vLLM spec"):
        parse_spec("vllm:")


def test_in_the_vllm_environment():
    """This file's engine tests, run by the vLLM environment's Python."""
    if HAVE_VLLM:
        pytest.skip("this Python has vLLM: the engine tests run here directly")
    if not VLLM_PYTHON.exists():
        if os.environ.get("TRUTHSCOPE_REQUIRE_ENGINES"):
            pytest.fail(WHY)
        pytest.skip(WHY)
    done = subprocess.run(
        [str(VLLM_PYTHON), "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-m", "not slow and not gpu",
         "-k", "not test_in_the_vllm_environment"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "TRUTHSCOPE_REQUIRE_VLLM": "1"},
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if not line.startswith(("(EngineCore", "(Worker"))]
    summary = "\n".join(lines[-40:])
    assert done.returncode == 0, summary
    assert " passed" in lines[-1] and "skipped" not in lines[-1] and "failed" not in lines[-1], summary


@pytest.fixture(scope="module")
def engines():
    """(vLLM model, transformers model) on the same converted weights."""
    if not HAVE_VLLM:
        if os.environ.get("TRUTHSCOPE_REQUIRE_VLLM"):
            pytest.fail("vLLM is not importable in the vLLM environment")
        pytest.skip("no vLLM in this Python: test_in_the_vllm_environment runs these with the vLLM environment's")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from truthscope.models import load_model

    lm = load_model("vllm:smollm2-135m?max_model_len=2048&enforce_eager=true", dtype="float32")
    hf = load_model("smollm2-135m", device="cpu", dtype="float32", batch_size=8)
    yield lm, hf
    lm.llm.llm_engine.engine_core.shutdown()


def mc_requests(n_questions: int, data_version: str = "2021") -> list[LoglikelihoodRequest]:
    from truthscope.runlog import Sample
    from truthscope.tasks.base import Resources, build_task

    task = build_task("mc", {}, Resources(version=data_version), Sample(how="first", n=n_questions))
    return list(dict.fromkeys(r for q in task.items() for r in task.requests(q, None)))  # type: ignore[arg-type]


@pytest.mark.bundled
def test_token_split_matches_the_transformers_backend_token_by_token(engines):
    lm, hf = engines
    requests = mc_requests(20) + mc_requests(5, "2025")
    requests += [
        LoglikelihoodRequest("Q: x\nA: ", "yes"),
        LoglikelihoodRequest("", "Hello"),
        LoglikelihoodRequest("a  ", " b"),
    ]
    for r in requests:
        assert lm.encode_pair(r.context, r.continuation) == hf.encode_pair(r.context, r.continuation), r


@pytest.mark.bundled
def test_loglikelihoods_match_the_transformers_backend(engines):
    lm, hf = engines
    requests = mc_requests(4)
    got, want = lm.loglikelihood(requests), hf.loglikelihood(requests)
    assert [g.n_tokens for g in got] == [w.n_tokens for w in want]
    assert [g.is_greedy for g in got] == [w.is_greedy for w in want]
    assert max(abs(g.logprob - w.logprob) for g, w in zip(got, want, strict=True)) < 1e-3
    # request order does not change a result (the engine sees them sorted)
    assert lm.loglikelihood(requests[::-1]) == got[::-1]


@pytest.mark.bundled
def test_generation_greedy_stops_and_seeded_samples(engines):
    lm, hf = engines
    prompts = ["Q: What is the capital of France?\nA:", "Q: What happens if you crack your knuckles a lot?\nA:"]
    greedy = [GenerationRequest(p, stop=("\n", "Q:"), max_new_tokens=24) for p in prompts]
    texts = lm.generate(greedy)
    assert texts == hf.generate(greedy)
    assert all("\n" not in t and "Q:" not in t for t in texts)
    sampled = [GenerationRequest("The best thing about", max_new_tokens=12, temperature=1.0, seed=s) for s in range(4)]
    once = lm.generate(sampled)
    assert lm.generate(sampled[::-1]) == once[::-1]  # each request's seed fixes its sample, batched any way
    assert len(set(once)) > 1


@pytest.mark.bundled
def test_a_cache_hit_inside_the_continuation_is_scored_again_without_the_cache(engines):
    lm, hf = engines
    # long continuations sharing their start: asked twice, the second time the engine holds every
    # block of them, past the context's end, where it returns no log-probabilities
    long = " The answer is a long one. " * 40
    requests = [LoglikelihoodRequest("Q: Why?\nA:", long + ending) for ending in ("Yes.", "No.")]
    first = lm.loglikelihood(requests)
    before = lm.recomputed
    assert lm.loglikelihood(requests) == first
    assert lm.recomputed > before
    want = hf.loglikelihood(requests)
    assert max(abs(g.logprob - w.logprob) for g, w in zip(first, want, strict=True)) < 1e-3
