"""Feature views and on-demand feature views of the adprior feature repo.

Batch views (materialized to the online store): ``user_profile``, ``user_behavior``,
``advertiser_stats``, and per predictor (:func:`prediction_views`, one definition instantiated over
each predictions source: ``llm`` over ``llm_predictions``, ``heuristic`` over the heuristic control's
``heuristic_predictions``, both PREDICTION_SCHEMA) ``<predictor>_advertiser_predictions`` and
``<predictor>_user_interests``. On-demand views (computed per request, never stored):
``llm_candidate_features`` / ``heuristic_candidate_features`` (the same code,
``udf_inputs.prediction_candidate_features``, outputs prefixed by the predictor) and
``behavior_candidate_features`` (``udf_inputs.behavior_candidate_features``) score (user, candidate
advertiser) pairs; their semantics live in udf_inputs.py only, vectorised over one user's candidates.

On-demand UDFs must be self-contained: Feast stores their source text in the registry and
re-executes it with only ``pd``/``np`` in scope when it loads the registry (serving, historical
retrieval), so imports live inside the function body; the row helpers both UDFs share (udf_inputs.py)
are imported there from the installed package ``adprior_feature_repo``.

The candidate advertiser comes from the request field ``candidate_advertiser_id``
(data_sources.candidate_request), not from the ``advertiser_id`` join key: Feast infers an ODFV's
output schema at apply time from sample inputs built only from its declared sources (join keys
are not among them), and whether join keys reach the UDF differs between the online and the
historical path. A declared request field is part of the view's contract on both paths.
"""

from datetime import timedelta

import pandas as pd
from data_sources import (
    advertiser_stats_source,
    candidate_request,
    heuristic_predictions_source,
    llm_predictions_source,
    user_behavior_source,
    user_profile_source,
)
from entities import advertiser, user
from feast import FeatureView, Field
from feast.data_source import DataSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Bool, Float64, Int64, String, UnixTimestamp

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(0),  # a profile never goes stale in point-in-time joins
    schema=[
        Field(name="gender", dtype=String),
        Field(name="age", dtype=Int64),
        Field(name="user_state", dtype=String),
        Field(name="country", dtype=String),
    ],
    online=True,
    source=user_profile_source,
    description="Profile from the raw users table; event_timestamp = signup date.",
)

user_behavior = FeatureView(
    name="user_behavior",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[
        Field(name="n_attributed", dtype=Int64),
        Field(name="n_matched", dtype=Int64),
        Field(name="n_active_advertisers", dtype=Int64),
        Field(name="active_advertiser_ids", dtype=Array(Int64)),
        Field(name="active_advertisers", dtype=Array(String)),
        Field(name="attributed_conversions", dtype=Array(String)),
        Field(name="matched_conversions", dtype=Array(String)),
        Field(name="onsite_searches", dtype=Array(String)),
        Field(name="offsite_searches", dtype=Array(String)),
        Field(name="offsite_urls", dtype=Array(String)),
        Field(name="top_categories", dtype=Array(String)),
        Field(name="top_brands", dtype=Array(String)),
        Field(name="last_event_ts", dtype=UnixTimestamp),
    ],
    online=True,
    source=user_behavior_source,
    description="Compiled behaviour of anchor date x (lists newest first); valid from x + 1 day.",
)


def prediction_views(predictor: str, source: DataSource, who: str) -> tuple[FeatureView, FeatureView]:
    """The two views over one predictions source (PREDICTION_SCHEMA): ``<predictor>_advertiser_predictions``
    (the resolved list, model version, status) and ``<predictor>_user_interests``; the LLM's and the
    heuristic control's are defined by this one function, so every consumer reads both alike."""
    advertisers = FeatureView(
        name=f"{predictor}_advertiser_predictions",
        entities=[user],
        ttl=timedelta(days=60),
        schema=[
            Field(name="advertiser_ids", dtype=Array(Int64)),
            Field(name="advertiser_names", dtype=Array(String)),
            Field(name="model_version", dtype=String),
            Field(name="status", dtype=String),
            Field(name="n_unresolved", dtype=Int64),
        ],
        online=True,
        source=source,
        description=f"{who} resolved advertiser list (<= 20, in order) of the latest inference date.",
    )
    interests = FeatureView(
        name=f"{predictor}_user_interests",
        entities=[user],
        ttl=timedelta(days=60),
        schema=[Field(name="interests", dtype=Array(String)), Field(name="model_version", dtype=String)],
        online=True,
        source=source,
        description=f"{who} <= 5 interests of the latest inference date.",
    )
    return advertisers, interests


llm_advertiser_predictions, llm_user_interests = prediction_views("llm", llm_predictions_source, "The LLM's")
heuristic_advertiser_predictions, heuristic_user_interests = prediction_views(
    "heuristic",
    heuristic_predictions_source,
    "The heuristic control's (history + brands + co-occurrence + popularity; interests = top categories)",
)

advertiser_stats = FeatureView(
    name="advertiser_stats",
    entities=[advertiser],
    ttl=timedelta(days=7),
    schema=[
        Field(name="spend", dtype=Float64),
        Field(name="revenue", dtype=Float64),
        Field(name="bid_type", dtype=String),
        Field(name="name", dtype=String),
        Field(name="category", dtype=String),
        Field(name="brand_group", dtype=String),
        Field(name="is_active", dtype=Bool),
    ],
    online=True,
    source=advertiser_stats_source,
    description="Daily spend/revenue of day dt (known from dt + 1 day) with the advertiser's attributes.",
)


def candidate_schema(predictor: str) -> list[Field]:
    """Output fields of a predictor's candidate view (udf_inputs.prediction_candidate_features)."""
    names = ("rank", "in_top5", "in_top20", "has_prediction", "interest_match")
    return [Field(name=f"{predictor}_{n}", dtype=Int64) for n in names]


def candidate_sources(advertisers: FeatureView, interests: FeatureView) -> list:
    """Inputs of a predictor's candidate view: its list, its interests, the candidate's category."""
    return [
        advertisers[["advertiser_ids"]],
        interests[["interests"]],
        advertiser_stats[["category"]],
        candidate_request,
    ]


CANDIDATE_DESCRIPTION = (
    "{who} features of a (user, candidate advertiser) pair: 1-based rank of the candidate in the "
    "predicted list (0 = absent or no prediction), in top 5 / top 20, whether the user has a "
    "prediction row, and whether an interest matches the candidate's category: a taxonomy interest "
    "('Apparel / Athletic', what the answer grammar writes) when it equals the category path or an "
    "ancestor of it; a free-text interest (older or unconstrained predictions) when it shares a word "
    "(>= 3 letters, case-insensitive, stop words excluded) with any level of the path."
)


@on_demand_feature_view(
    sources=candidate_sources(llm_advertiser_predictions, llm_user_interests),
    schema=candidate_schema("llm"),
    mode="pandas",
    description=CANDIDATE_DESCRIPTION.format(who="LLM"),
)
def llm_candidate_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """Rank / top-k / interest-category match of the candidate in the user's LLM prediction."""
    from adprior_feature_repo.udf_inputs import prediction_candidate_features

    return prediction_candidate_features(inputs, "llm")


@on_demand_feature_view(
    sources=candidate_sources(heuristic_advertiser_predictions, heuristic_user_interests),
    schema=candidate_schema("heuristic"),
    mode="pandas",
    description=CANDIDATE_DESCRIPTION.format(who="Heuristic-control"),
)
def heuristic_candidate_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """Rank / top-k / interest-category match of the candidate in the user's heuristic-control list."""
    from adprior_feature_repo.udf_inputs import prediction_candidate_features

    return prediction_candidate_features(inputs, "heuristic")


@on_demand_feature_view(
    sources=[
        user_behavior[["active_advertiser_ids", "top_categories", "top_brands"]],
        advertiser_stats[["name", "category"]],
        candidate_request,
    ],
    schema=[
        Field(name="hist_rank", dtype=Int64),
        Field(name="hist_in_active", dtype=Int64),
        Field(name="category_in_top_categories", dtype=Int64),
        Field(name="brand_in_top_brands", dtype=Int64),
    ],
    mode="pandas",
    description=(
        "Non-LLM features of a (user, candidate advertiser) pair: 1-based recency rank of the "
        "candidate among the user's past-conversion advertisers (0 = absent), whether the candidate's "
        "category path equals or is an ancestor/descendant of one of the user's top categories, and "
        "whether its name equals one of the user's top brands (case-insensitive)."
    ),
)
def behavior_candidate_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """History rank and category / brand overlap of the candidate with the user's behaviour."""
    from adprior_feature_repo import udf_inputs

    return udf_inputs.behavior_candidate_features(inputs)
