"""The residual quantiser of semantic IDs (paper 3.5) and the code tuples it assigns.

* :class:`RQVAE` (torch): encoder MLP -> ``levels`` residual quantisers with ``codebook_size`` codes each
  (k-means initialised on the first batch's residuals, straight-through estimator, codebook + commitment
  loss) -> decoder MLP with a reconstruction loss. The paper uses 5 levels of 20,248 codes for Pinterest's
  catalogue; the defaults here (3 x 64) fit catalogues of a few thousand items.
* Collisions: items sharing a code tuple get an extra final level 0, 1, 2, ... (by item_id), so every SID
  is unique; items without a collision get 0 there too, so every SID has ``levels + 1`` tokens
  (:func:`dedup_codes`); :func:`codebook_usage` and :func:`collision_stats` measure the codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from llm_predictor.sid.artifacts import RQVAE_FILE


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """Residual-quantised autoencoder (RQ-VAE, as in TIGER): MLP encoder, ``levels`` codebooks, MLP decoder.

    ``forward(x)`` returns a dict with ``x_hat`` (reconstruction), ``z`` (latent), ``z_q`` (quantised latent,
    straight-through), ``codes`` (n, levels) int64, ``recon_loss`` and ``quant_loss`` (codebook + beta *
    commitment, summed over levels).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 32,
        hidden_dims: Sequence[int] = (256, 128),
        levels: int = 3,
        codebook_size: int = 64,
        commitment_weight: float = 0.25,
    ) -> None:
        super().__init__()
        self.input_dim, self.latent_dim = input_dim, latent_dim
        self.levels, self.codebook_size, self.commitment_weight = levels, codebook_size, commitment_weight
        self.encoder = _mlp([input_dim, *hidden_dims, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(tuple(hidden_dims)), input_dim])
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(codebook_size, latent_dim) * 0.1) for _ in range(levels)]
        )
        self.register_buffer("initialized", torch.tensor(False))

    @staticmethod
    def _nearest(r: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        return torch.cdist(r, codebook).argmin(dim=1)

    @torch.no_grad()
    def kmeans_init(self, x: torch.Tensor, seed: int = 0) -> None:
        """Seed every level's codebook with k-means centroids of that level's residuals of ``x``.

        Level 0 clusters the encoder outputs, level l the residuals left after levels < l (with the
        codebooks just initialised). With fewer distinct residuals than codes, the remaining codes are
        residuals drawn at random plus small noise.
        """
        from sklearn.cluster import KMeans

        gen = np.random.default_rng(seed)
        r = self.encoder(x)
        for lvl, cb in enumerate(self.codebooks):
            pts = r.detach().cpu().numpy().astype(np.float64)
            k = min(self.codebook_size, len(np.unique(pts.round(6), axis=0)))
            km = KMeans(n_clusters=k, n_init=1, random_state=seed + lvl).fit(pts)
            centers = km.cluster_centers_
            if k < self.codebook_size:
                extra = pts[gen.integers(0, len(pts), self.codebook_size - k)]
                extra = extra + gen.normal(0.0, 1e-3 * (pts.std() + 1e-8), extra.shape)
                centers = np.concatenate([centers, extra])
            cb.data.copy_(torch.as_tensor(centers, dtype=cb.dtype))
            r = r - cb[self._nearest(r, cb)]
        self.initialized.fill_(True)

    def quantize(
        self, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(quantised latent with straight-through gradient, codes (n, levels), quantisation loss, residuals)."""
        r = z
        q_sum = torch.zeros_like(z)
        codes, residuals = [], []
        loss = z.new_zeros(())
        for cb in self.codebooks:
            idx = self._nearest(r.detach(), cb)
            e = cb[idx]
            residuals.append(r)
            # Codebook loss moves codes to the residuals; commitment loss keeps the encoder near its codes.
            loss = (
                loss
                + ((r.detach() - e) ** 2).mean()
                + self.commitment_weight * ((r - e.detach()) ** 2).mean()
            )
            q_sum = q_sum + e
            codes.append(idx)
            r = r - e.detach()
        z_q = z + (q_sum - z).detach()  # straight-through estimator: forward z_q, gradient to z
        return z_q, torch.stack(codes, dim=1), loss, residuals

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        z_q, codes, quant_loss, _ = self.quantize(z)
        x_hat = self.decoder(z_q)
        recon = ((x_hat - x) ** 2).mean()
        return {
            "x_hat": x_hat,
            "z": z,
            "z_q": z_q,
            "codes": codes,
            "recon_loss": recon,
            "quant_loss": quant_loss,
        }

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (n, levels) of ``x``."""
        return self.quantize(self.encoder(x))[1]


def dedup_codes(codes: np.ndarray, item_ids: Sequence[int] | None = None) -> np.ndarray:
    """Append the collision level: items sharing a code tuple get 0, 1, 2, ... in item_id order.

    Args:
        codes: (n, levels) semantic codes.
        item_ids: order within a collision group (default: row order).

    Returns:
        (n, levels + 1) codes, every row unique.
    """
    codes = np.asarray(codes, dtype=np.int64)
    df = pd.DataFrame(codes, columns=[f"l{i}" for i in range(codes.shape[1])])
    df["_order"] = np.arange(len(df)) if item_ids is None else np.asarray(item_ids)
    keys = list(df.columns[:-1])
    suffix = df.sort_values("_order", kind="stable").groupby(keys, sort=False).cumcount()
    return np.concatenate([codes, suffix.reindex(df.index).to_numpy()[:, None]], axis=1)


def codebook_usage(codes: np.ndarray, codebook_size: int) -> list[dict[str, float]]:
    """Per level: share of the codebook used, distinct codes used and perplexity exp(H(code))."""
    out = []
    for lvl in range(codes.shape[1]):
        counts = np.bincount(codes[:, lvl], minlength=codebook_size).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        out.append(
            {
                "level": lvl,
                "used": int((counts > 0).sum()),
                "usage": round(float((counts > 0).sum() / codebook_size), 4),
                "perplexity": round(float(np.exp(-(p * np.log(p)).sum())), 3),
            }
        )
    return out


def collision_stats(codes: np.ndarray) -> dict[str, float]:
    """How many items share their semantic code tuple with another item (before the collision level)."""
    n = len(codes)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    shared = counts[inverse.reshape(-1)] > 1
    return {
        "items": n,
        "unique_code_tuples": len(counts),
        "collision_rate": round(1.0 - len(counts) / max(n, 1), 4),  # share of items needing a suffix > 0
        "items_in_collisions": round(
            float(shared.mean()) if n else 0.0, 4
        ),  # share of items in a shared tuple
        "max_items_per_tuple": int(counts.max()) if n else 0,
    }


def load_rqvae(sid_out: Path) -> RQVAE:
    """The trained RQ-VAE of a :func:`~llm_predictor.sid.build.build_sids` output folder (eval mode)."""
    blob = torch.load(Path(sid_out) / RQVAE_FILE, weights_only=True)
    c = blob["config"]
    model = RQVAE(
        blob["input_dim"],
        c["latent_dim"],
        c["hidden_dims"],
        c["levels"],
        c["codebook_size"],
        c["commitment_weight"],
    )
    model.load_state_dict(blob["state_dict"])
    return model.eval()
