"""Feast entities of the adprior feature repo: users and advertisers (both int64 ids)."""

from feast import Entity, ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A user of the ads system (raw table `users`).",
)

advertiser = Entity(
    name="advertiser",
    join_keys=["advertiser_id"],
    value_type=ValueType.INT64,
    description="An advertiser (raw table `advertisers`); candidate ads are scored per advertiser.",
)
