"""The report, built from the logs of a real (mock-model) sweep whose answer is known, and opened in
headless Chromium."""

import re
import shutil
from pathlib import Path

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


def test_findings_say_which_way_the_metrics_moved(sweep_dir):
    analysis = analyse([sweep_dir])
    by_key = {(r["task"], r["preset"], r["metric"], r["group"]): r for r in analysis["scaling"]}
    mc1 = by_key[("mc", "qa", "mc1", None)]
    assert [m["model"] for m in mc1["models"]] == ["small", "large"]
    assert mc1["models"][1]["mean"] == 0.0 and mc1["fit"]["ci_high"] < 0  # two decades, all lost
    assert mc1["fit"]["slope"] == pytest.approx(-mc1["models"][0]["mean"] / 2)
    assert any(line.startswith("TruthfulQA MC1 (qa preset): falls with size") for line in analysis["headlines"])
    assert ("statements", None, "accuracy", "verifier") in by_key  # the control is there, per kind
    falsehoods = analysis["falsehoods"]
    assert falsehoods["large"] == "large" and falsehoods["n_flipped_to_true"] == 0
    assert falsehoods["n_flipped_to_false"] == round(mc1["models"][0]["mean"] * 120)
    assert analysis["caveats"][0] == "A caveat the sweep file states."
    assert any("Only two model sizes" in c for c in analysis["caveats"])
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
