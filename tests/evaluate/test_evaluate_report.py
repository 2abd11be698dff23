import json
import math
from html.parser import HTMLParser

import typer
from typer.testing import CliRunner

from tessera.evaluate.cli import register
from tessera.evaluate.report import SECTIONS, render_report, write_report
from tessera.predictor import Predictor

VOID = {"meta", "img", "br", "input", "link", "hr", "source"}


class Page(HTMLParser):
    """Collects ids and media/link targets, and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (tag, src or href)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("src", "href"):
            if key in attrs:
                self.refs.append((tag, attrs[key]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    return page


def test_evaluate_command_writes_a_self_contained_report(tiny_table, tiny_schema, tmp_path):
    predictor = Predictor(model={"dim": 16}, train={"epochs": 3, "batch_size": 16, "patience": 0}).fit(tiny_table, schema=tiny_schema)
    predictor.save(tmp_path / "model")
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    results_path = tmp_path / "out" / "results.json"
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "model"), str(tiny_table), "--report", str(results_path), "--group", "color", "--n-boot", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "95% CI" in result.output and "balanced_accuracy" in result.output and "by color" in result.output

    html = results_path.with_suffix(".html").read_text()
    page = parse(html)
    assert set(SECTIONS) <= page.ids
    assert any(tag == "img" and src.startswith("data:image/png;base64,") for tag, src in page.refs)
    assert any(tag == "audio" and src.startswith("data:audio/wav;base64,") for tag, src in page.refs)
    assert not [ref for _, ref in page.refs if ref.startswith(("http://", "https://", "//"))]
    assert "http://" not in html and "https://" not in html

    saved = json.loads(results_path.read_text())
    assert saved["meta"]["n"] == 48 and len(saved["examples"]) == 8
    kinds = {item["input"]: item["kind"] for item in saved["examples"][0]["inputs"]}
    assert kinds == {"image": "image", "audio": "audio", "caption": "text", "numeric": "values", "categorical": "values"}
    assert [f["column"] for f in saved["fairness"]] == ["color", "inputs present"]
    assert saved["summary"]["accuracy"]["low"] <= saved["summary"]["accuracy"]["value"] <= saved["summary"]["accuracy"]["high"]

    # the JSON alone is enough: re-rendering gives the same page
    result = runner.invoke(app, ["report", str(results_path), "--output", str(tmp_path / "again.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again.html").read_text() == html


def test_report_of_a_regression_with_missing_values(tmp_path):
    results = {
        "meta": {"model": "m", "table": "t.csv", "task": "regression", "n": 3, "n_boot": 10, "alpha": 0.05, "inputs": {"x": "numeric"}},
        "summary": {"mae": {"value": 0.5, "low": math.nan, "high": math.inf}, "n": 3},
        "scatter": {"true": [1.0, 2.0, 3.0], "predicted": [1.5, 2.0, 2.5]},
        "fairness": [],
        "examples": [{"row": 1, "loss": 0.5, "true": 1.0, "predicted": 1.5,
                      "inputs": [{"input": "x", "modality": "numeric", "kind": "values", "value": {"x": None}},
                                 {"input": "note", "modality": "text", "kind": "text", "value": "<script>alert(1)</script>"}]}],
    }
    json_path, html_path = write_report(results, tmp_path / "r.json")
    saved = json.loads(json_path.read_text())
    assert saved["summary"]["mae"] == {"value": 0.5, "low": None, "high": None}  # strict JSON: no NaN
    html = html_path.read_text()
    page = parse(html)
    assert set(SECTIONS) <= page.ids
    assert "only for multiclass targets" in html and "predicted vs true" in html
    assert "<script>" not in html  # cell text is escaped
    assert render_report(json_path, tmp_path / "again.html").read_text() == html
