"""Feature services: what ranking (without predictions, with the heuristic control's, with the LLM's) and
retrieval read.

Feature names must be unique within a service when read with short names
(``full_feature_names=False``): ``model_version`` lives in both prediction views of a predictor (they
share one source row), so ``<predictor>_predictions_online`` takes it from the advertiser view only.
The heuristic control's services mirror the LLM's (issue 18): the same views and candidate features
over its own source, so a consumer switches predictor by service name only.
"""

from feast import FeatureService, FeatureView
from features import (
    advertiser_stats,
    behavior_candidate_features,
    heuristic_advertiser_predictions,
    heuristic_candidate_features,
    heuristic_user_interests,
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

ranking_heuristic = FeatureService(
    name="ranking_heuristic",
    features=[*_BASELINE, heuristic_candidate_features],
    description="ranking_baseline plus the heuristic control's candidate features (heuristic_rank, "
    "top-5/20, interest match): the control row of Table 5.",
)

ranking_llm = FeatureService(
    name="ranking_llm",
    features=[*_BASELINE, llm_candidate_features],
    description="ranking_baseline plus the LLM candidate features (rank, top-5/20, interest match).",
)


def predictions_online(predictor: str, advertisers: FeatureView, interests: FeatureView) -> FeatureService:
    """A predictor's latest list, interests and model version: retrieval and lookups (user_id rows)."""
    return FeatureService(
        name=f"{predictor}_predictions_online",
        features=[advertisers, interests[["interests"]]],
        description=f"The user's latest {predictor} prediction (advertisers, interests, model version): "
        "retrieval and lookups. Entity rows need user_id only.",
    )


llm_predictions_online = predictions_online("llm", llm_advertiser_predictions, llm_user_interests)
heuristic_predictions_online = predictions_online(
    "heuristic", heuristic_advertiser_predictions, heuristic_user_interests
)
