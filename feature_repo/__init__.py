"""adprior's Feast repository: entities, data sources, feature views and feature services (see README.md).

Feast (``feast apply``, ``adprior.store.repo.apply``) imports the other modules of this folder by their
bare names from inside it and skips this file. It is here so that a wheel can ship the folder as the
package ``adprior_feature_repo`` (setup.py), which ``adprior.store.repo.PROJECT_REPO`` falls back on
when adprior does not run from a checkout.
"""
