"""adprior.report_all: the one-page report of every paper table from committed results."""

from __future__ import annotations

import shutil

from adprior.report_all import PAPER_T5, ReportAllConfig, build
from tests.support.paths import ROOT

REPORTS = ROOT / "reports"


def test_report_all_from_committed_results(tmp_path):
    root = tmp_path / "reports"
    shutil.copytree(REPORTS, root, ignore=shutil.ignore_patterns("*.png", "all"))
    page = build(ReportAllConfig(reports=root, out=tmp_path / "all.md")).read_text()
    for t in range(2, 7):
        assert f"## Table {t}:" in page
    assert "| gbdt | baselines/world_baselines | 355 |" in page  # baselines beside the LLM rows
    assert f"{PAPER_T5['vtcvr'][2]:+.2f}" in page and "adprior ranking train" in page
    assert "(A/A)" in page and "paired counterfactual" in page


def test_missing_results_are_named(tmp_path):
    root = tmp_path / "reports"
    root.mkdir()
    page = build(ReportAllConfig(reports=root, out=tmp_path / "all.md")).read_text()
    assert "Not committed: `adprior ranking train`" in page
    assert "Not committed: `adprior retrieval ab-test`" in page
    assert "No ablation run committed" in page
