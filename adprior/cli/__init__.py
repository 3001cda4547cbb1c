"""The ``adprior`` command line: one verb per stage, each a thin wrapper over a library function.

Verbs live beside the stage they drive (``data``, ``train``, ``evaluate``, ``serve``, ``sid``,
``consumers``, ``controls``); this face assembles them under one ``main`` group.
"""

from __future__ import annotations

import click

from adprior.cli import consumers, controls, data, evaluate, serve, sid, train
from adprior.cli.options import setup_logging
from adprior.threads import mark_job, passive_wait


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """adprior: a fine-tuned LLM as a complementary advertiser predictor for an ads system."""
    setup_logging(verbose)
    mark_job()  # thread sizing counts the job's own process tree (Ray, Spark, vLLM) as not a neighbour
    passive_wait()  # before any verb loads torch / OpenMP: idle OpenMP threads sleep (adprior.threads)


for verb in (
    data.simulate,
    data.import_amazon,
    data.compile_cmd,
    data.base_model,
    data.world_check,
    train.train,
    evaluate.eval_cmd,
    evaluate.report,
    serve.infer,
    serve.materialize,
    serve.lookup,
    serve.nightly,
    controls.heuristic,
    consumers.ranking,
    consumers.retrieval,
    sid.sid,
):
    main.add_command(verb)
