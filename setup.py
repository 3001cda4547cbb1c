"""The packages of the adprior distribution; everything else about the build is in pyproject.toml.

One thing pyproject.toml cannot say: the checkout's top-level ``feature_repo/`` (the Feast definitions,
top-level so that the ``feast`` CLI runs inside it) ships as the package ``adprior_feature_repo``, with
its yamls, ``.feastignore`` and README but never its ``data/``. A non-editable install then finds it
through ``adprior.store.repo.PROJECT_REPO`` (checked by tests/adprior/test_store.py). The committed LoRA
adapters under ``llm_predictor/adapters/`` are package data.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        # llm_predictor.adapters.<name> are data folders (package data below), listed so setuptools
        # does not warn that an importable folder is left out
        *find_namespace_packages(include=["adprior*", "world*", "llm_predictor*", "ranking*", "retrieval*"]),
        "adprior_feature_repo",
    ],
    package_dir={"adprior_feature_repo": "feature_repo"},
    package_data={
        "adprior": ["log4j2.properties"],  # Spark's driver logging (adprior.io.get_spark)
        "adprior_feature_repo": ["*.yaml", ".feastignore", "README.md"],
        # the shipped LoRA adapters (llm_predictor/shipped.py): weights, PEFT config, manifest, model card
        "llm_predictor": ["adapters/*/*.safetensors", "adapters/*/*.json", "adapters/*/*.md"],
    },
)
