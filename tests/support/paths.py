"""Where the checkout, its Feast repo and the shared real data are, seen from the tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
FEATURE_REPO = ROOT / "feature_repo"  # the Feast definitions shipped with adprior
# the project's shared folder (real data, design): beside the checkout, else the workplace's copy
SHARED = next(
    (p for p in (ROOT.parent / "shared", Path("/work/shared")) if p.exists()), ROOT.parent / "shared"
)
AMAZON_SCIENTIFIC = SHARED / "data" / "amazon-scientific"
