"""The report copies each run's command and numbers and draws a PNG per run."""

from __future__ import annotations

import json
from pathlib import Path

from llm_predictor.eval.report import ReportConfig, build_report


def test_report_tables_commands_and_charts(tmp_path: Path) -> None:
    run = tmp_path / "run_a"
    run.mkdir()
    ev = {
        "command": "adprior eval --examples E --data D --out run_a",
        "anchor_dates": ["2026-06-22"],
        "n_rows": {"V1": 10, "V0": 0},
        "ks": [1, 5, 20],
        "methods": {
            "history": {"kind": "baseline", "recall": {"V1": {"R@1": 0.1, "R@5": 0.3, "R@20": 0.5}}},
            "model": {
                "kind": "llm",
                "recall": {"V1": {"R@1": 0.2, "R@5": 0.4, "R@20": 0.6}},
                "recall_ci": {"V1": {"R@20": [0.3127, 0.8318]}},
                "format": {"V1": {"valid_format_rate": 0.9, "hallucination_rate": 0.05}},
            },
        },
        "combinations": [],
        "paired": [
            {
                "set": "V1",
                "k": 20,
                "a": "model",
                "b": "history",
                "n": 10,
                "a_only": 2,
                "b_only": 1,
                "diff": 0.1,
                "p": 1.0,
            }
        ],
    }
    (run / "eval.json").write_text(json.dumps(ev))
    md = build_report(ReportConfig(runs=[run], out=tmp_path / "report"))
    text = md.read_text()
    assert "adprior eval --examples E --data D --out run_a" in text
    assert "| history | 0.100 | 0.300 | 0.500 | – | – | – |" in text
    assert "| model | 0.200 | 0.400 | 0.600 | [0.31, 0.83] | 0.900 | 0.050 |" in text
    assert "V0 R@1" not in text  # empty sets are left out
    assert "| model | history | 20 | +0.100 | [-0.306, +0.506] | 2 | 1 | 1.000 |" in text  # from the counts
    png = tmp_path / "report" / "run_a.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_intro_and_trained_models(tmp_path: Path) -> None:
    sft, base = tmp_path / "sft", tmp_path / "base"
    sft.mkdir()
    base.mkdir()  # no train_summary.json: not listed
    (sft / "train_summary.json").write_text(
        json.dumps(
            {
                "command": "adprior train sft --examples E --out sft --max-steps 30",
                "metrics": {
                    "stage": "sft",
                    "template": "grpo_text",
                    "steps": 30,
                    "examples_seen": 120,
                    "train_loss_first": 4.5,
                    "train_loss_last": 2.25,
                    "s_per_step": 19.5,
                },
            }
        )
    )
    run = tmp_path / "run"
    run.mkdir()
    ev = {
        "command": "adprior eval",
        "config": {"models": [str(base), str(sft)]},
        "n_rows": {"V1": 4},
        "ks": [1, 5, 20],
        "methods": {},
        "combinations": [],
    }
    (run / "eval.json").write_text(json.dumps(ev))
    intro = tmp_path / "intro.md"
    intro.write_text("Sizes: 48 eval rows.\n")
    text = build_report(ReportConfig(runs=[run, run], out=tmp_path / "report", intro=intro)).read_text()
    assert "Sizes: 48 eval rows." in text
    row = (
        f"| `{sft}` | sft | grpo_text | 30 | 120 | loss 4.500 -> 2.250 | 19.500 | "
        "`adprior train sft --examples E --out sft --max-steps 30` |"
    )
    assert text.count(row) == 1  # once, although two runs evaluated it
    assert f"`{base}`" not in text.split("## run")[0]


def test_runs_with_the_same_name_keep_their_own_sections_and_charts(tmp_path: Path) -> None:
    runs = []
    for ds, r20 in (("llm_world", 0.5), ("llm_amazon", 0.25)):
        run = tmp_path / ds / "table3"
        run.mkdir(parents=True)
        ev = {
            "command": f"adprior eval --out {ds}",
            "n_rows": {"V1": 4},
            "ks": [1, 5, 20],
            "combinations": [],
            "methods": {
                "history": {"kind": "baseline", "recall": {"V1": {"R@1": 0.0, "R@5": 0.0, "R@20": r20}}}
            },
        }
        (run / "eval.json").write_text(json.dumps(ev))
        runs.append(run)
    out = tmp_path / "report"
    text = build_report(ReportConfig(runs=runs, out=out)).read_text()
    assert "## llm_world_table3" in text and "## llm_amazon_table3" in text
    assert (out / "llm_world_table3.png").exists() and (out / "llm_amazon_table3.png").exists()
    assert text.index("adprior eval --out llm_world") < text.index("## llm_amazon_table3")


def test_trained_models_list_the_lineage_and_copies(tmp_path: Path) -> None:
    """A scored model's parents (``config.model`` of each train summary) are listed before it, and a folder whose
    summary says it was written elsewhere is shown as a copy."""
    cpt1, cpt2, sft, copy = (tmp_path / n for n in ("cpt1", "cpt2", "sft", "copy"))
    for folder, parent, stage in (
        (cpt1, None, "cpt1"),
        (cpt2, cpt1, "cpt2"),
        (sft, cpt2, "sft"),
        (copy, None, "sft"),
    ):
        folder.mkdir()
        written = tmp_path / "elsewhere" if folder == copy else folder
        (folder / "train_summary.json").write_text(
            json.dumps(
                {
                    "command": f"adprior {stage} --out {written}",
                    "config": {"model": str(parent) if parent else None},
                    "metrics": {"stage": stage, "model_dir": str(written)},
                }
            )
        )
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.json").write_text(
        json.dumps(
            {
                "command": "adprior eval",
                "config": {"models": [str(sft), str(copy)]},
                "n_rows": {"V1": 4},
                "ks": [1],
                "methods": {},
                "combinations": [],
            }
        )
    )
    text = build_report(ReportConfig(runs=[run], out=tmp_path / "report")).read_text()
    models = text.split("## Trained models")[1].split("\n## ")[0]
    order = [
        models.index(f"`adprior {s} --out {f}`") for s, f in (("cpt1", cpt1), ("cpt2", cpt2), ("sft", sft))
    ]
    assert order == sorted(order)
    assert f"| `{copy}` (written as `{tmp_path / 'elsewhere'}`, then copied) | sft |" in models
    assert f"(written as `{sft}`" not in models
