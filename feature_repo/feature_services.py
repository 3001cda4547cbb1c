"""Feature services: what ranking (with and without the LLM) and retrieval read.

Feature names must be unique within a service when read with short names
(``full_feature_names=False``): ``model_version`` lives in both prediction views (they share one
source row), so ``llm_predictions_online`` takes it from ``llm_advertiser_predictions`` only.
"""

from feast import FeatureService
from features import (
    advertiser_stats,
    behavior_candidate_features,
    llm_advertiser_predictions,
    llm_candidate_features,
    llm_user_interests,
    user_behavior,
    user_profile,
)

# Non-LLM features of a (user, candidate advertiser) pair: the baseline ranker.
_BASELINE = [
    user_profile,
    user_behavior[["n_attributed", "n_matched", "n_active_advertisers", "last_event_ts"]],
    advertiser_stats[["spend", "revenue", "bid_type", "category", "brand_group", "is_active"]],
    behavior_candidate_features,
]

ranking_baseline = FeatureService(
    name="ranking_baseline",
    features=_BASELINE,
    description="Ranking without LLM features: profile, behaviour aggregates, advertiser stats, "
    "history/category/brand match of the candidate. Entity rows need user_id, advertiser_id and "
    "candidate_advertiser_id (= advertiser_id).",
)

ranking_llm = FeatureService(
    name="ranking_llm",
    features=[*_BASELINE, llm_candidate_features],
    description="ranking_baseline plus the LLM candidate features (rank, top-5/20, interest match).",
)

llm_predictions_online = FeatureService(
    name="llm_predictions_online",
    features=[llm_advertiser_predictions, llm_user_interests[["interests"]]],
    description="The user's latest LLM prediction (advertisers, interests, model version): retrieval "
    "and lookups. Entity rows need user_id only.",
)
