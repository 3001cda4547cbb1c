"""The Feast repository side: the definitions shipped with adprior, a copy per experiment, and
``feast apply`` from Python.

:data:`PROJECT_REPO` is the ``feature_repo/`` folder of the checkout, or the package
``adprior_feature_repo`` that a wheel installs the same files as (pyproject.toml / setup.py).
:func:`init_repo` copies its definitions (not its data) into a new folder; :func:`apply` registers a
repo's objects in the registry of the chosen yaml and creates the online tables.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from adprior.store.config import OFFLINE_ENV, StoreConfig, feast_output, get_store, translate_outage

log = logging.getLogger(__name__)


def _shipped_repo() -> Path:
    """The checkout's ``feature_repo/`` beside the package (a source checkout or an editable install),
    else the installed package ``adprior_feature_repo`` (a wheel: the same files, see setup.py)."""
    checkout = Path(__file__).resolve().parents[2] / "feature_repo"
    if (checkout / "feature_store.yaml").is_file():
        return checkout
    try:
        return Path(str(importlib.resources.files("adprior_feature_repo")))
    except ModuleNotFoundError:
        return checkout  # neither: init_repo then finds nothing to copy


PROJECT_REPO = _shipped_repo()  # the definitions shipped with adprior
_REPO_FILES = ("*.py", "*.yaml", ".feastignore", "README.md")


def init_repo(repo: Path, source: Path = PROJECT_REPO) -> bool:
    """Make ``repo`` a Feast repo with adprior's definitions (a copy without data) unless it is one.

    A separate repo per experiment keeps its offline tables and registry apart from the default
    ``feature_repo/`` (two simulated worlds share user ids).

    Args:
        repo: the folder to create; left as it is when it already has a ``feature_store.yaml``.
        source: the repo whose definitions are copied.

    Returns:
        True when the definitions were copied.
    """
    repo = Path(repo)
    if (repo / "feature_store.yaml").exists():
        return False
    repo.mkdir(parents=True, exist_ok=True)
    for pattern in _REPO_FILES:
        for f in sorted(Path(source).glob(pattern)):
            if f.name != "__init__.py":  # only makes the folder a package of the wheel; Feast skips it
                shutil.copy2(f, repo / f.name)
    log.info("created Feast repo %s from %s", repo, source)
    return True


@contextlib.contextmanager
def repo_imports(repo: Path) -> Iterator[None]:
    """Make the repo's modules importable by their bare names (as ``feast apply`` does) for a while.

    Modules of the same names imported before (another copy of the repo, or an unrelated package)
    are set aside and restored afterwards, so two repos can be applied in one process.
    """
    names = {p.stem for p in repo.glob("*.py")} | {
        p.name for p in repo.iterdir() if (p / "__init__.py").exists()
    }

    def ours(mod: str) -> bool:
        return mod.split(".")[0] in names

    saved_modules = {k: sys.modules.pop(k) for k in list(sys.modules) if ours(k)}
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    sys.path.insert(0, str(repo))
    sys.dont_write_bytecode = True  # no __pycache__ inside the repo
    try:
        with contextlib.chdir(repo):
            yield
    finally:
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode


def apply(cfg: StoreConfig) -> None:
    """``feast apply`` for ``cfg`` from Python: register the repo's objects, create online tables.

    Imports the repo's .py files (minus ``.feastignore``) like the CLI does, then diffs them against
    the registry of the chosen yaml (objects removed from the repo are deleted from it).

    Why Feast's own steps (``parse_repo`` + ``apply_total_with_repo_instance``) rather than a public
    one-call path (Feast 0.67, read in feast/repo_operations.py and feature_store.py):

    - ``feast.repo_operations.apply_total`` does ``os.chdir(repo)`` and never changes back (the
      caller is left inside the repo), leaves ``sys.dont_write_bytecode`` set, finds the repo's modules
      only when the cwd happens to be on ``sys.path`` (the CLI appends the repo itself), imports them
      through the process-wide module cache (a second repo, or the same repo with the other offline
      store, gets the modules imported first: FileSources registered in the Spark registry, since
      data_sources.py picks its class at import time), and calls ``sys.exit(1)`` on a project
      mismatch. :func:`repo_imports` scopes all of that to the call and restores it.
    - ``FeatureStore.apply(objects, partial=False)`` registers what it is given but deletes only the
      objects passed in ``objects_to_delete``: the diff against the registry and the data-source
      validation are exactly what ``apply_total_with_repo_instance`` adds.

    Raises:
        StoreUnavailable: the online store cannot be reached (Redis down).
    """
    from feast.project import Project
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    repo = Path(cfg.repo).resolve()
    (repo / "data").mkdir(parents=True, exist_ok=True)  # registry and SQLite live there
    store = get_store(cfg)
    before = os.environ.get(OFFLINE_ENV)
    os.environ[OFFLINE_ENV] = cfg.offline  # data_sources.py: FileSource or SparkSource
    try:
        with repo_imports(repo):
            contents = parse_repo(repo)
    finally:  # restored: the variable is also StoreConfig.offline's default
        if before is None:
            os.environ.pop(OFFLINE_ENV, None)
        else:
            os.environ[OFFLINE_ENV] = before
    if not contents.projects:
        contents.projects.append(Project(name=store.project, description=""))
    elif [p.name for p in contents.projects] != [store.project]:
        raise ValueError(
            f"repo defines projects {[p.name for p in contents.projects]}, yaml says {store.project!r}"
        )
    # Spark validates a source by reading it, and cannot read a folder without parquet files (the
    # file store does not read at apply time): skip the check until every table has data.
    empty = [
        ds.name
        for ds in contents.data_sources
        if cfg.offline == "spark" and getattr(ds, "path", None) and not any(Path(ds.path).glob("*.parquet"))
    ]
    if empty:
        log.warning("apply: no offline data yet for %s; Spark source validation skipped", sorted(empty))
    with translate_outage(cfg, "feast apply"), feast_output("feast apply"):
        apply_total_with_repo_instance(
            store, store.project, store.registry, contents, skip_source_validation=bool(empty)
        )
