"""How the on-demand views' UDFs (features.py) read their input rows: nulls, lists, category paths, ranks.

Feast re-executes a UDF's source text with only ``pd``/``np`` in scope, so both UDFs import this module
inside their bodies by its installed name, ``adprior_feature_repo.udf_inputs`` (setup.py ships this folder
as that package). ``feast apply`` imports it too, by its bare name; it defines no Feast objects.
"""

import pandas as pd

from world.schema import category_levels


def is_null(v: object) -> bool:
    """None, or a value ``pd.isna`` calls missing (arrays and lists it cannot judge are not null)."""
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # arrays, lists
        return False


def as_list(v: object) -> list:
    """A list-valued feature as a plain list (null -> [])."""
    return [] if is_null(v) else list(v)


def column(inputs: pd.DataFrame, name: str) -> pd.Series:
    """The input column ``name``, or all nulls when the request did not bring it."""
    return inputs[name] if name in inputs.columns else pd.Series([None] * len(inputs), dtype=object)


def category_path(text: object) -> tuple:
    """A lower-cased category path: 'Home > Decor' (advertisers), 'Home / Decor' (interests, compiled
    examples) -> ('home', 'decor'); null -> ()."""
    return () if is_null(text) else tuple(level.lower() for level in category_levels(str(text)))


def rank_of(candidate: object, ids: object) -> int:
    """1-based position of the candidate advertiser in the id list ``ids``; 0 when absent or null."""
    if is_null(candidate):
        return 0
    c = int(candidate)
    for pos, x in enumerate(as_list(ids), start=1):
        if not is_null(x) and int(x) == c:
            return pos
    return 0
