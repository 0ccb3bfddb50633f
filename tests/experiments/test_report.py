"""The report: links only existing files (relative), self-contained HTML, metrics flattened,
claims collected, Markdown twin with the same content."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from experiments import report
from experiments.common import claim, save_figure, write_json_atomic


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        for key, value in attrs:
            if key in ("href", "src") and value is not None:
                self.links.append(value)


def _fake_run(root: Path, name: str, metrics, status="finished", figures=("a.png",)):
    from matplotlib.figure import Figure

    folder = root / name
    folder.mkdir(parents=True)
    write_json_atomic(folder / "config.json", {
        "experiment": name, "preset": "tiny", "config": {"n": 1}, "seeds": [0],
        "description": f"what {name} does", "reference": "Someone 2019, Journal 1(2)",
        "device": "cpu", "status": status, "wall_time_s": 1.25, "torch_version": "x",
        "error": "RuntimeError: boom" if status == "failed" else None})
    if metrics is not None:
        write_json_atomic(folder / "metrics.json", metrics)
    (folder / "run.log").write_text("log\n")
    for fig_name in figures:
        fig = Figure(figsize=(1, 1))
        fig.subplots().plot([0, 1])
        save_figure(fig, folder / fig_name)
    return folder


@pytest.fixture
def root(tmp_path):
    _fake_run(tmp_path, "seed-xor", {
        "accuracy": {"single": 0.5, "two": 1.0},
        "per_seed": [{"seed": 0, "acc": 0.5}, {"seed": 1, "acc": 0.75}],
        "curve": list(range(100)),
        "claims": [claim("two layers solve XOR", True, accuracy=1.0),
                   claim("a <b> | tricky & claim", False, ratio=0.5)]},
        figures=("regions.png", "sub dir/with space.png"))
    _fake_run(tmp_path, "custom-folder", {"x": 1}, figures=())
    _fake_run(tmp_path, "seed-backprop", None, status="failed", figures=())
    (tmp_path / "not-a-run").mkdir()   # no config.json: not reported
    (tmp_path / "seed-xor" / ".hidden.png").write_bytes(b"")  # temporary files are not linked
    return tmp_path


def test_html_links_only_existing_relative_files_and_is_self_contained(root):
    html_path, md_path = report.write_report(root)
    assert html_path == root / "index.html" and md_path == root / "REPORT.md"
    parser = _Links()
    parser.feed(html_path.read_text())
    files = [link for link in parser.links if not link.startswith("#")]
    assert any(link.endswith("regions.png") for link in files)
    assert any("with%20space.png" in link for link in files)
    for link in files:
        parsed = urlparse(link)
        assert not parsed.scheme and not parsed.netloc and not link.startswith("/"), link
        assert (root / unquote(parsed.path)).is_file(), f"dangling link {link}"
    assert not any(".hidden" in link for link in files)
    # self-contained: no external stylesheet, no script, CSS inline
    assert not any(tag in ("script", "link", "iframe") for tag, _ in parser.tags)
    assert "<style>" in html_path.read_text()
    anchors = {attrs.get("id") for _, attrs in parser.tags if attrs.get("id")}
    for link in parser.links:
        if link.startswith("#"):
            assert link[1:] in anchors


def test_markdown_links_exist(root):
    _, md_path = report.write_report(root)
    text = md_path.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert any(link.endswith(".png") for link in links)
    for link in links:
        assert not urlparse(link).scheme
        assert (root / unquote(link)).is_file(), f"dangling link {link}"


def test_report_content(root):
    html_path, md_path = report.write_report(root)
    html, md = html_path.read_text(), md_path.read_text()
    for text in (html, md):
        assert "what seed-xor does" in text and "Someone 2019, Journal 1(2)" in text
        assert "two layers solve XOR" in text
        assert "1 of 2 claims held" in text
        assert "RuntimeError: boom" in text           # the failed experiment says why
        assert "custom-folder" in text                # unregistered run folders are included
        assert "not-a-run" not in text
        assert "accuracy.single" in text and "per_seed[1].acc" in text
        assert "100 values: first 0, last 99, min 0, max 99" in text
        assert "1.2 s" in text                        # wall time
        assert "fbp-demo" in text                     # registered experiments without results
    assert "a &lt;b&gt; | tricky &amp; claim" in html
    assert "a <b> \\| tricky & claim" in md           # pipes escaped in Markdown tables
    # the claims table of the Markdown twin
    rows = [line for line in md.splitlines() if line.startswith("| seed-xor | tiny |")]
    assert any("| yes |" in r and "accuracy = 1" in r for r in rows)
    assert any("| no |" in r and "ratio = 0.5" in r for r in rows)


def test_flatten_metrics_and_format_value():
    rows = dict(report.flatten_metrics({
        "a": {"b": {"c": 1.0}}, "claims": [1], "lst": [1, 2, 3], "none": None,
        "flag": True, "big": 123456789.0, "small": 1.5e-7, "seeds": [{"psnr": 30.123456}],
        "empty": {}}))
    assert rows == {"a.b.c": "1", "lst": "[1, 2, 3]", "none": "n/a", "flag": "yes",
                    "big": "1.235e+08", "small": "1.500e-07", "seeds[0].psnr": "30.12",
                    "empty": "{}"}
    assert report.format_value([0.5] * 20).startswith("20 values")
    assert report.format_value(["a"] * 20).startswith("20 items")


def test_report_of_an_empty_folder(tmp_path):
    html_path, md_path = report.write_report(tmp_path)
    assert "0 of 0 claims held" in html_path.read_text()
    assert "No claims checked yet." in md_path.read_text()
    json.dumps(report.claims_table(report.collect(tmp_path)))


def test_numbers_a_claim_compares_are_printed_apart():
    """At 4 digits the sparse-view claim "LPD > U-Net > FBP" printed unet = 24.73, fbp = 24.73
    (24.7306 and 24.7292); the values of one dict or list get the digits that tell them apart."""
    assert report.format_value({"unet": 24.7306, "fbp": 24.7292, "lpd": 22.1}) == \
        "unet=24.731, fbp=24.729, lpd=22.1"
    assert report.format_value([24.7306, 24.7292]) == "[24.731, 24.729]"
    assert report.format_value({"a": 1.5, "b": 2.25}) == "a=1.5, b=2.25"  # no digits added
    assert report.format_value({"a": 1.0, "b": 1.0}) == "a=1, b=1"  # equal values stay equal


def test_each_experiment_section_repeats_its_claims(tmp_path):
    folder = tmp_path / "fbp-demo"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"status": "finished", "preset": "tiny"}))
    (folder / "metrics.json").write_text(json.dumps({"claims": [
        {"claim": "the disk comes back", "held": True, "numbers": {"error": 0.001}}]}))
    report.write_report(tmp_path)
    md = (tmp_path / "REPORT.md").read_text()
    section = md.split("## fbp-demo", 1)[1]
    assert "| the disk comes back | yes | error = 0.001 |" in section
    assert section.count("the disk comes back") == 1
    assert "the disk comes back" in (tmp_path / "index.html").read_text().split(
        'id="exp-fbp-demo"', 1)[1]
