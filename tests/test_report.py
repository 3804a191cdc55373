"""The report, built from the logs of a real (mock-model) sweep whose answer is known, from run logs
written by hand in the schema-2 layout (two bundled-like models of different families, and a family
of three), and opened in headless Chromium."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from truthscope.data import load_truthfulqa
from truthscope.errors import TruthscopeError
from truthscope.models import MockModel
from truthscope.report import analyse, write_report
from truthscope.sweep import SweepSpec, run_sweep

REPO = Path(__file__).resolve().parents[1]


class SizedMock(MockModel):
    def __init__(self, name, n_params, logprobs=None):
        import torch

        super().__init__(name=name, logprobs=logprobs)
        self.model = torch.nn.Linear(n_params, 1, bias=False)


@pytest.fixture(scope="module")
def sweep_dir(data_dir, tmp_path_factory):
    """Two 'sizes': the small mock scores at chance; the large one gives every false MC answer a
    high log-probability, so it imitates falsehoods and its MC1 must fall to ~0."""
    dataset = load_truthfulqa(data_dir, "2021")
    false_answers = {
        " " + a: -0.5 for q in dataset.questions for a, label in q.mc1_targets + q.mc2_targets if not label
    }

    def load(entry, spec):
        if entry.spec == "small":
            return SizedMock("small", 1_000)
        return SizedMock("large", 100_000, logprobs=false_answers)

    spec = SweepSpec.model_validate(
        {
            "name": "report-test",
            "models": ["small", "large"],
            "presets": ["qa", "help", "harm"],
            "tasks": ["mc", "statements"],
            "mc": {"limit": 120},
            "statements": {"sets": ["larger_than", "cities", "common_claim_true_false"], "limit": 30},
            "caveats": ["A caveat the sweep file states."],
        }
    )
    out = tmp_path_factory.mktemp("sweep")
    run_sweep(spec, out, data=str(data_dir), load=load, progress=False, echo=lambda _: None)
    return out


@pytest.fixture(scope="module")
def report_dir(sweep_dir):
    out = sweep_dir / "report"
    write_report([sweep_dir], out, title="Report test")
    return out


def test_findings_say_what_two_models_support(sweep_dir):
    """Two mock models whose logs record no family: the large one loses every MC1 question the small
    one had. The report gives the paired difference large - small, not a slope or "falls with size"
    (the old report did: a slope from two models). Whatever layout the sweep writes, this holds."""
    analysis = analyse([sweep_dir])
    by_key = {(r["task"], r["preset"], r["metric"], r["group"]): r for r in analysis["scaling"]}
    mc1 = by_key[("mc", "qa", "mc1", None)]
    assert [m["model"] for m in mc1["models"]] == ["small", "large"]
    assert mc1["models"][1]["mean"] == 0.0 and mc1["models"][1]["method"] == "wilson"
    assert mc1["models"][1]["ci_high"] > 0  # Wilson: 0 of 120 is not certainty
    assert mc1["fits"] == []
    (difference,) = mc1["differences"]
    assert (difference["a"], difference["b"]) == ("small", "large")
    assert difference["mean"] == pytest.approx(-mc1["models"][0]["mean"]) and difference["ci_high"] < 0
    line = next(x for x in analysis["headlines"] if x.startswith("TruthfulQA MC1 (qa preset):"))
    assert "large - small" in line and "large lower" in line and "not a size effect" in line
    assert not any("with size" in x or "per 10x" in x for x in analysis["headlines"])
    assert ("statements", None, "accuracy", "verifier") in by_key  # the control is there, per kind
    falsehoods = analysis["falsehoods"]
    assert falsehoods["large"] == "large" and falsehoods["n_flipped_to_true"] == 0
    assert falsehoods["n_flipped_to_false"] == round(mc1["models"][0]["mean"] * 120)
    assert falsehoods["p_asymmetry"] < 1e-6
    assert analysis["caveats"][0] == "A caveat the sweep file states."
    assert any("No family has 3 or more models" in c for c in analysis["caveats"])
    assert any("do not record the model family" in c for c in analysis["caveats"])
    assert any("120 questions" in c for c in analysis["caveats"])


def test_html_is_self_contained_and_every_plot_is_saved(report_dir):
    html = (report_dir / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    pngs = sorted(p.name for p in (report_dir / "plots").glob("*.png"))
    assert len(images) == len(pngs) >= 5
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:)?//', html), "nothing may need a network"
    assert "<script" not in html
    markdown = (report_dir / "report.md").read_text()
    assert "## What it found" in markdown and "## Confident falsehoods" in markdown
    for link in re.findall(r"\]\((plots/[^)]+)\)", markdown):
        assert (report_dir / link).exists()
    assert (report_dir / "analysis.json").exists()


def test_report_command_and_its_errors(sweep_dir, tmp_path):
    from typer.testing import CliRunner

    from truthscope.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["report", str(sweep_dir / "small"), str(sweep_dir / "large"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["report", str(empty), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no finished runs" in result.output
    with pytest.raises(TruthscopeError, match="two runs of small"):
        analyse([sweep_dir / "small" / "mc-qa", shutil.copytree(sweep_dir / "small" / "mc-qa", tmp_path / "copy")])


# --- headless Chromium ---------------------------------------------------------------------------


def chromium_driver(profile: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1200,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium must not try to download one
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))


def severe(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    driver = chromium_driver(tmp_path / "profile")
    try:
        # the check must be able to fail: a page with a console error and a broken image is caught
        broken = tmp_path / "broken.html"
        broken.write_text('<html><body><script>console.error("boom")</script><img src="missing.png"></body></html>')
        driver.get(broken.as_uri())
        assert severe(driver), "console errors are not being captured"

        driver.get((report_dir / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        assert len(images) >= 5
        for name, complete, width, height in images:
            assert complete and width > 0 and height > 0, f"{name} did not render"
        assert severe(driver) == []
        assert driver.title == "Report test"

        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1200, min(height + 100, 16000))
        artefacts = REPO / "test-artifacts"
        artefacts.mkdir(exist_ok=True)
        shot = artefacts / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()


# --- logs in the schema-2 layout, written here -------------------------------------------------------


def write_run(folder: Path, config: dict, records: list[dict], summary: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "summary.json").write_text(json.dumps(summary))


def model_block(label, params, non_embedding, family, description=None, quantisation=None):
    return {
        "spec": label,
        "label": label,
        "params": params,
        "non_embedding_params": non_embedding,
        "family": family,
        "dtype": "float32",
        "quantisation": quantisation,
        "description": description,
    }


def write_model_logs(root: Path, model: dict, p_true: float, p_statement: float, seed: int) -> None:
    """An MC run (qa preset, 80 questions in 4 categories, 4 MC1 answers each) and a statements run
    (30 verifier and 30 knowledge statements), the model right with the given probabilities."""
    rng = np.random.default_rng(seed)
    common = {"schema": 2, "model": model, "seed": 0, "sweep": "typed"}
    records = []
    for i in range(80):
        right = rng.random() < p_true
        logprobs = [-1.0, -2.0, -2.5, -3.0] if right else [-2.0, -1.0, -2.5, -3.0]
        options = [{"text": f"answer {k}", "label": int(k == 0), "logprob": lp} for k, lp in enumerate(logprobs)]
        p = np.exp(logprobs) / np.exp(logprobs).sum()
        records.append(
            {
                "id": i,
                "question": f"question {i}?",
                "category": f"category {i % 4}",
                "type": "Adversarial",
                "scores": {"mc1": float(right), "mc2": float(p[0])},
                "answers": {"mc1": options, "mc2": options},
            }
        )
    mc_config = {
        **common,
        "task": "mc",
        "options": {"preset": "qa", "protocol": "harness"},
        "data": {"version": "2021", "sha256": {"TruthfulQA.csv": "0" * 64}},
        "sample": {"how": "seeded", "n": 80, "seed": 0},
    }
    scores = {m: {"mean": float(np.mean([r["scores"][m] for r in records]))} for m in ("mc1", "mc2")}
    write_run(root / model["label"] / "mc-qa", mc_config, records, {"task": "mc", "scores": scores})
    statements, by_set = [], {}
    for name, kind, offset in (("larger_than", "verifier", 0), ("cities", "knowledge", 30)):
        rows = []
        for k in range(30):
            label = k % 2
            right = rng.random() < p_statement
            believed = bool(label) == right
            rows.append(
                {
                    "id": offset + k,
                    "set": name,
                    "kind": kind,
                    "label": label,
                    "margin": 1.0 if believed else -1.0,
                    "believed_true": believed,
                    "scores": {"accuracy": float(right)},
                }
            )
        mean = float(np.mean([r["scores"]["accuracy"] for r in rows]))
        by_set[name] = {
            "kind": kind,
            "accuracy": {"mean": mean, "ci_low": max(0, mean - 0.15), "ci_high": min(1, mean + 0.15), "n": 30},
            "auroc": mean,
            "share_true": 0.5,
        }
        statements += rows
    statements_config = {
        **common,
        "task": "statements",
        "options": {"sets": ["larger_than", "cities"]},
        "data": None,
        "sample": {"how": "first", "n": 30, "seed": 0},
    }
    summary = {
        "task": "statements",
        "rule": "a rule",
        "scores": {"accuracy": {"mean": float(np.mean([r["scores"]["accuracy"] for r in statements]))}},
        "by_set": by_set,
    }
    write_run(root / model["label"] / "statements", statements_config, statements, summary)


SMOL_DESCRIPTION = "written in the log: SmolLM2 body, llama architecture"


@pytest.fixture(scope="module")
def typed_dir(tmp_path_factory):
    """smollm2-135m and gemma3-270m as the offline sweep records them: 2x apart in total parameters,
    about equal without embeddings, of two families."""
    root = tmp_path_factory.mktemp("typed")
    smol = model_block("smollm2-135m", 134_515_008, 106_168_128, "llama", SMOL_DESCRIPTION, "gguf q4_1, dequantised")
    gemma = model_block("gemma3-270m", 268_098_176, 100_000_000, "gemma3", None, "gguf q4_k_m, dequantised")
    write_model_logs(root, smol, p_true=0.3, p_statement=0.8, seed=1)
    write_model_logs(root, gemma, p_true=0.5, p_statement=0.6, seed=2)
    return root


def test_two_families_get_differences_and_caveats_from_the_logs_only(typed_dir):
    analysis = analyse([typed_dir])
    entry = next(r for r in analysis["runs"] if r["model"] == "smollm2-135m")
    assert (entry["family"], entry["non_embedding_params"], entry["limit"]) == ("llama", 106_168_128, 80)
    mc1 = next(r for r in analysis["scaling"] if r["task"] == "mc" and r["metric"] == "mc1")
    assert [m["model"] for m in mc1["models"]] == ["gemma3-270m", "smollm2-135m"]  # by non-embedding size
    assert mc1["fits"] == [] and mc1["mixed_families"] and mc1["axis"] == "non-embedding parameters"
    text = " ".join(analysis["headlines"])
    assert "with size" not in text and "per 10x" not in text
    assert "smollm2-135m - gemma3-270m" in text and "not a size effect" in text
    caveats = " ".join(analysis["caveats"])
    assert "different (or unrecorded) families (gemma3: gemma3-270m; llama: smollm2-135m)" in caveats
    assert (
        "Sizes are non-embedding parameters (total in brackets): gemma3-270m 100M (268M), smollm2-135m 106M" in caveats
    )
    # the description and quantisation come from the logs, not from the installed model table
    assert f"smollm2-135m: {SMOL_DESCRIPTION}; quantised weights (gguf q4_1, dequantised)" in caveats
    assert "gemma3-270m: quantised weights (gguf q4_k_m, dequantised)" in caveats
    assert "Apache-2.0" not in caveats  # BUNDLED's description of smollm2-135m
    assert "above-chance scale" in caveats and "MC1 chance here: 0.250" in caveats
    (contrast,) = [r for r in analysis["contrasts"] if r["metric"] == "mc1" and r["kind"] == "verifier"]
    assert contrast["measure"] == "difference" and contrast["models"] == ["gemma3-270m", "smollm2-135m"]
    assert any(
        line.startswith("Contrast on the above-chance scale: from gemma3-270m to smollm2-135m")
        for line in analysis["headlines"]
    )
    for rows in analysis["categories"].values():
        assert {r["measure"] for r in rows} == {"difference"} and not any(r["inverse"] for r in rows)
    assert analysis["falsehoods"]["mixed_families"]


def as_old_layout(src: Path, dst: Path) -> None:
    """The same runs as the flat, pre-schema-2 logs held them: no family, no non-embedding count,
    statements records with `correct` instead of `scores`."""
    for config_path in src.rglob("config.json"):
        new = json.loads(config_path.read_text())
        model, options = new["model"], new["options"]
        old = {"task": new["task"], "model": model["spec"], "model_label": model["label"], "params": model["params"]}
        old |= {k: options[k] for k in ("preset", "protocol", "sets") if k in options}
        old |= {"version": (new["data"] or {}).get("version"), "limit": new["sample"]["n"]}
        records = [json.loads(line) for line in (config_path.parent / "records.jsonl").read_text().splitlines()]
        if new["task"] == "statements":
            records = [
                {**{k: v for k, v in r.items() if k != "scores"}, "correct": r["scores"]["accuracy"] == 1}
                for r in records
            ]
        summary = json.loads((config_path.parent / "summary.json").read_text())
        write_run(dst / config_path.parent.relative_to(src), old, records, summary)


def test_old_layout_logs_still_load_and_get_no_family_claims(typed_dir, tmp_path):
    as_old_layout(typed_dir, tmp_path / "old")
    new, old = analyse([typed_dir]), analyse([tmp_path / "old"])
    assert {r["model"] for r in old["runs"]} == {"smollm2-135m", "gemma3-270m"}
    assert all(r["family"] is None and r["non_embedding_params"] is None for r in old["runs"])
    mc1 = next(r for r in old["scaling"] if r["task"] == "mc" and r["metric"] == "mc1")
    assert [m["model"] for m in mc1["models"]] == ["smollm2-135m", "gemma3-270m"]  # by total parameters
    assert mc1["axis"] == "parameters" and mc1["fits"] == [] and mc1["mixed_families"]
    new_mc1 = next(r for r in new["scaling"] if r["task"] == "mc" and r["metric"] == "mc1")
    assert mc1["differences"][0]["mean"] == pytest.approx(-new_mc1["differences"][0]["mean"])  # other order
    accuracy = {
        (r["group"], m["model"]): m["mean"] for r in old["scaling"] if r["task"] == "statements" for m in r["models"]
    }
    assert accuracy == {
        (r["group"], m["model"]): m["mean"] for r in new["scaling"] if r["task"] == "statements" for m in r["models"]
    }
    assert any("gemma3-270m, smollm2-135m: the logs do not record the model family" in c for c in old["caveats"])
    assert not any("quantised" in c for c in old["caveats"])  # old logs do not say; nothing is looked up


def test_findings_read_no_installed_model_table():
    import truthscope.report.findings as findings

    assert "bundled" not in Path(findings.__file__).read_text()


def test_typed_report_files_say_only_what_the_numbers_support(typed_dir, tmp_path):
    write_report([typed_dir], tmp_path, title="Typed")
    markdown = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    for text in (markdown, html):
        assert "per 10x" not in text and "with size:" not in text and "falls with size" not in text
        assert "above-chance scale" in text
        assert "smollm2-135m - gemma3-270m" in text
    assert "Benjamini-Hochberg" in markdown
    assert len(list((tmp_path / "plots").glob("*.png"))) >= 5


def test_a_family_of_three_gets_a_slope_within_it(tmp_path):
    for k, (label, n) in enumerate((("f-10m", 10**7), ("f-100m", 10**8), ("f-1b", 10**9))):
        block = model_block(label, n + 50_000_000, n, "f")
        write_model_logs(tmp_path, block, p_true=0.8 - 0.3 * k, p_statement=0.6 + 0.15 * k, seed=k)
    analysis = analyse([tmp_path])
    mc1 = next(r for r in analysis["scaling"] if r["task"] == "mc" and r["metric"] == "mc1")
    (fit,) = mc1["fits"]
    assert fit["family"] == "f" and fit["axis"] == "non-embedding parameters" and fit["ci_high"] < 0
    line = next(x for x in analysis["headlines"] if x.startswith("TruthfulQA MC1 (qa preset):"))
    assert "within f (3 models): falls with size, slope -" in line and "per 10x non-embedding parameters" in line
    (contrast,) = [r for r in analysis["contrasts"] if r["metric"] == "mc1" and r["kind"] == "verifier"]
    assert contrast["measure"] == "slope" and contrast["ci_high"] < 0
    assert not any("No family has" in c for c in analysis["caveats"])


def test_a_statement_set_answered_one_way_gets_a_caveat():
    from truthscope.report.findings import caveats

    analysis = {
        "runs": [],
        "unfinished": [],
        "failed_cells": [],
        "statements": {
            "m": {
                "sp_en_trans": {"share_believed_true": 1.0, "auroc": 0.73},
                "cities": {"share_believed_true": 0.5, "auroc": 0.9},
            }
        },
    }
    lines = [c for c in caveats(analysis) if "called" in c]
    assert lines == [
        "m called 100.0% of the sp_en_trans statements true: its accuracy there mostly reflects that response "
        "bias and the label balance; the threshold-free AUROC is 0.73."
    ]


def test_report_md_escapes_what_models_and_data_wrote(tmp_path):
    """Labels, questions and answers reach report.md as inert text, as they reach report.html."""
    hostile = "<script>x</script>|*b*"
    root = tmp_path / "runs"
    write_model_logs(root, model_block("a", 1_000, 900, "f", "<img src=x onerror=alert(1)>"), 0.3, 0.8, seed=1)
    write_model_logs(root, model_block("b", 2_000, 1_800, "g", hostile), 0.5, 0.6, seed=2)
    written = write_report([root], tmp_path / "report")
    text = Path(written["markdown"]).read_text()
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;" in text or "&lt;img" in text


def test_organism_reports_under_the_paths_become_a_section(sweep_dir, tmp_path):
    """An organism `report.json` beside the runs: its predictions (claims escaped) and its figure are
    in both report files; a JSON file of another shape is not taken for one."""
    effect = {"mean": 0.165, "ci_low": 0.003, "ci_high": 0.284, "replicates": 3, "facts": 42}
    curve = {k: dict(effect) for k in ("stacked p_mis", "stacked tv", "scattered acc", "clean acc")}
    organism = tmp_path / "organism" / "report"
    organism.mkdir(parents=True)
    (organism / "report.json").write_text(
        json.dumps(
            {
                "table": [],
                "predictions": [
                    {
                        "prediction": "a",
                        "claim": "stacked <b>P(mis)</b>, xl - xs > 0",
                        "effect": effect,
                        "verdict": "supported",
                    },
                ],  # fmt: skip
                "size_effects": [],
                "curves": {"xs": {"params": 16_480, **curve}, "xl": {"params": 2_000_000, **curve}},
                "models": ["base/xs/seed0", "base/xl/seed0"],
            }
        )
    )
    (tmp_path / "organism" / "other").mkdir()
    (tmp_path / "organism" / "other" / "report.json").write_text('{"predictions": []}')
    out = tmp_path / "report"
    write_report([sweep_dir, tmp_path / "organism"], out, title="with organism")
    html = (out / "report.html").read_text()
    assert html.count("<h2>The model organism</h2>") == 1
    assert "stacked &lt;b&gt;P(mis)&lt;/b&gt;" in html and "<b>P(mis)" not in html
    assert "+0.165 [+0.003, +0.284]" in html
    markdown = (out / "report.md").read_text()
    assert "## The model organism" in markdown and "(plots/organism-0.png)" in markdown
    assert (out / "plots" / "organism-0.png").stat().st_size > 1000


def test_sycophancy_runs_of_both_forms_go_in_one_report(tmp_path):
    from truthscope.analysis.runs import Run, _refuse_duplicates

    def run(name, form):
        config = {"schema": 2, "task": "sycophancy", "model": {"label": "m"}, "options": {"form": form, "preset": "qa"}}
        return Run(tmp_path / name, config, [], {})

    _refuse_duplicates([run("mc", "mc"), run("gen", "gen")])  # different settings: both kept
    with pytest.raises(TruthscopeError, match="two runs of m sycophancy"):
        _refuse_duplicates([run("gen", "gen"), run("gen2", "gen")])
