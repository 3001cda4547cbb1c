"""Training of the two-tower retrieval model (paper 3.6.1) and its hold-out evaluation.

- :func:`train`: items, positives of the objective, point-in-time user features (Feast),
  vocabularies; AdamW over weighted sampled softmax (:mod:`retrieval.model`); a time hold-out with
  recall@k over the whole catalogue; the model folder ``<out>/<objective>/`` (``model.pt``,
  ``config.json``, ``vocab.json``, ``items.parquet``, ``metrics.json``), read back by
  :func:`retrieval.model.load`.
- :func:`time_split`: the hold-out rows (the latest share by time).
- :func:`recall_at_k` / :func:`popularity_recall`: exact recall@k of the positive among all
  catalogue items, for a model and for a popularity ranking.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from retrieval.config import RetrievalConfig, config_to_dict
from retrieval.data import first_behavior_snapshot, interactions, item_features, user_features
from retrieval.model import (
    CONFIG_FILE,
    ITEMS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    VOCAB_FILE,
    TwoTower,
    embed_items,
    embed_users,
    item_log_q,
    retrieval_logits,
    sampled_softmax_loss,
    tensors,
)
from retrieval.vocab import Vocabs, encode_items, encode_users

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- evaluation


def recall_at_k(
    user_vecs: torch.Tensor,
    item_vecs: torch.Tensor,
    pos_rows: torch.Tensor,
    ks: tuple[int, ...],
    chunk: int = 2048,
) -> dict[str, float]:
    """Share of rows whose positive catalogue row ranks in the top k of all items by dot product.

    The rank is the number of items scoring strictly higher than the positive (exact, in torch).
    """
    if len(pos_rows) == 0:
        return {str(k): float("nan") for k in ks}
    ranks = []
    for s in range(0, len(pos_rows), chunk):
        scores = user_vecs[s : s + chunk] @ item_vecs.T
        pos = scores.gather(1, pos_rows[s : s + chunk].unsqueeze(1))
        ranks.append((scores > pos).sum(1))
    r = torch.cat(ranks)
    return {str(k): float((r < k).float().mean()) for k in ks}


def popularity_recall(
    counts: np.ndarray, pos_rows: np.ndarray, ks: tuple[int, ...], seed: int
) -> dict[str, float]:
    """Recall@k of ranking every user's catalogue by training popularity (ties broken at random)."""
    jitter = np.random.default_rng(seed).uniform(0.0, 0.5, size=len(counts))
    score = torch.from_numpy(counts.astype(np.float64) + jitter).unsqueeze(1)
    ones = torch.ones(len(pos_rows), 1, dtype=torch.float64)
    return recall_at_k(ones, score, torch.from_numpy(pos_rows), ks)


# ------------------------------------------------------------------------------------------- training


def time_split(ts: pd.Series, valid_fraction: float) -> np.ndarray:
    """True for the latest ``valid_fraction`` of rows by time (a boundary time goes to validation)."""
    ns = ts.astype("int64").to_numpy()
    return ns >= np.quantile(ns, 1 - valid_fraction)


def _epoch_loss(
    model: TwoTower,
    users: dict[str, np.ndarray],
    items: dict[str, torch.Tensor],
    pos_rows: np.ndarray,
    weight: np.ndarray,
    cfg: RetrievalConfig,
    log_q: torch.Tensor | None,
    gen: torch.Generator,
) -> float:
    """Mean weighted loss over fixed batches without gradients (the validation loss)."""
    total, wsum = 0.0, 0.0
    n_items = len(items["item"])
    with torch.no_grad():
        for s in range(0, len(pos_rows), cfg.batch_size):
            rows = np.arange(s, min(s + cfg.batch_size, len(pos_rows)))
            loss, w = _batch_loss(model, users, items, pos_rows, weight, rows, cfg, log_q, gen, n_items)
            total += float(loss) * w
            wsum += w
    return total / max(wsum, 1e-12)


def _batch_loss(
    model: TwoTower,
    users: dict[str, np.ndarray],
    items: dict[str, torch.Tensor],
    pos_rows: np.ndarray,
    weight: np.ndarray,
    rows: np.ndarray,
    cfg: RetrievalConfig,
    log_q: torch.Tensor | None,
    gen: torch.Generator,
    n_items: int,
) -> tuple[torch.Tensor, float]:
    """Loss of one batch of training rows, and the batch's weight sum."""
    u = model.user_vectors(tensors(users, rows))
    pos = torch.from_numpy(pos_rows[rows])
    neg = torch.randint(n_items, (cfg.mixed_negatives,), generator=gen)
    cand = torch.cat([pos, neg])
    v = model.item_vectors({k: t[cand] for k, t in items.items()})
    lq = None if log_q is None else log_q[cand]
    logits = retrieval_logits(
        u,
        v[: len(rows)],
        pos,
        v[len(rows) :],
        neg,
        cfg.temperature,
        None if lq is None else lq[: len(rows)],
        None if lq is None else lq[len(rows) :],
    )
    w = torch.from_numpy(weight[rows])
    return sampled_softmax_loss(logits, w), float(w.sum())


def train(cfg: RetrievalConfig) -> dict[str, Any]:
    """Train the two-tower model of ``cfg.objective`` and write its folder ``<out>/<objective>/``.

    Positives come from the raw events (:func:`retrieval.data.interactions`) in [start, end); each
    row's user features are Feast's point-in-time values at the interaction's time
    (:func:`retrieval.data.user_features`); vocabularies come from the catalogue and the training
    rows. The latest ``valid_fraction`` of rows by time are held out: their loss is reported per
    epoch and their recall@k of the positive item among all catalogue items at the end, next to an
    untrained model (same initialisation) and a popularity ranking.

    Args:
        cfg: data, store, objective, window, architecture and optimisation settings (see
            :class:`retrieval.config.RetrievalConfig`); ``cfg.start`` None means the first
            ``user_behavior`` snapshot's event time.

    Returns:
        The metrics (also ``<out>/<objective>/metrics.json``): ``objective``, ``rows`` (train / valid
        / dropped_unknown_items), ``users``, ``items``, ``window``, ``loss`` (per-epoch ``train`` and
        ``valid``), ``recall`` ({k: recall@k}), ``baselines`` (``untrained``, ``popularity``,
        ``random`` recall@k), ``seconds``, ``folder``.

    Raises:
        ValueError: bad settings, no behaviour snapshot to start from, or too few interactions.
    """
    cfg.validate()
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, t0)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: RetrievalConfig, t0: float) -> dict[str, Any]:
    items = item_features(cfg.data)
    start: Any = cfg.start
    if start is None:
        start = first_behavior_snapshot(cfg.store)
        if start is None:
            raise ValueError(
                f"no user_behavior snapshot in the store {cfg.store.repo}: write daily features "
                "first, or set start"
            )
    inter = interactions(
        cfg.data,
        cfg.objective,
        start,
        cfg.end,
        dwell_cap_s=cfg.dwell_cap_s,
        dwell_min_weight=cfg.dwell_min_weight,
    )
    row_of = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    known = inter["item_id"].isin(row_of.index).to_numpy()
    dropped = int((~known).sum())
    if dropped:
        log.warning(
            "%d %s interactions name items missing from the catalogue; dropped", dropped, cfg.objective
        )
    inter = inter[known].reset_index(drop=True)
    if len(inter) < 10:
        raise ValueError(
            f"objective {cfg.objective!r}: only {len(inter)} interactions in "
            f"[{start}, {cfg.end}) under {cfg.data}; widen the window or add users"
        )
    is_valid = time_split(inter["event_timestamp"], cfg.valid_fraction)
    if is_valid.all() or not is_valid.any():
        raise ValueError(
            f"objective {cfg.objective!r}: the time split leaves no train or no valid rows "
            f"({len(inter)} interactions, valid_fraction={cfg.valid_fraction})"
        )
    log.info(
        "%s: %d interactions (%d train, %d valid); point-in-time user features from %s",
        cfg.objective,
        len(inter),
        int((~is_valid).sum()),
        int(is_valid.sum()),
        cfg.store.repo,
    )
    t_feat = time.perf_counter()
    frame = user_features(cfg.store, inter)
    t_feat = time.perf_counter() - t_feat
    vocabs = Vocabs.build(items, frame[~is_valid], cfg.price_buckets)
    users = encode_users(frame, vocabs, cfg.max_history)
    item_t = tensors(encode_items(items, vocabs))
    pos_rows = row_of.loc[inter["item_id"].to_numpy()].to_numpy().astype(np.int64)
    weight = inter["weight"].to_numpy(np.float32)
    tr, va = np.flatnonzero(~is_valid), np.flatnonzero(is_valid)
    train_users = {k: v[tr] for k, v in users.items()}
    valid_users = {k: v[va] for k, v in users.items()}
    tr_pos, tr_weight = pos_rows[tr], weight[tr]
    counts = np.bincount(pos_rows[tr], minlength=len(items))
    log_q = (
        torch.from_numpy(item_log_q(counts, cfg.batch_size, cfg.mixed_negatives))
        if cfg.logq_correction
        else None
    )

    torch.manual_seed(cfg.seed)
    model = TwoTower(
        vocabs.sizes(), cfg.feature_dim, cfg.embedding_dim, tuple(cfg.hidden), cfg.share_embeddings
    )
    untrained = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: dict[str, list[float]] = {"train": [], "valid": []}
    steps = math.ceil(len(tr) / cfg.batch_size)
    t_fit = time.perf_counter()
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns) as progress:
        bar = progress.add_task(f"two-tower {cfg.objective}", total=cfg.epochs * steps)
        for epoch in range(cfg.epochs):
            model.train()
            order = torch.randperm(len(tr), generator=gen).numpy()
            total, wsum = 0.0, 0.0
            for s in range(0, len(tr), cfg.batch_size):
                rows = order[s : s + cfg.batch_size]
                loss, w = _batch_loss(
                    model, train_users, item_t, tr_pos, tr_weight, rows, cfg, log_q, gen, len(items)
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * w
                wsum += w
                progress.advance(bar)
            model.eval()
            vgen = torch.Generator().manual_seed(cfg.seed + 1)  # the same validation negatives every epoch
            losses["train"].append(round(total / max(wsum, 1e-12), 5))
            losses["valid"].append(
                round(_epoch_loss(model, valid_users, item_t, pos_rows[va], weight[va], cfg, log_q, vgen), 5)
            )
            progress.update(
                bar,
                description=f"two-tower {cfg.objective} loss {losses['train'][-1]:.3f} "
                f"valid {losses['valid'][-1]:.3f}",
            )
            log.info(
                "epoch %d: train loss %.4f, valid loss %.4f",
                epoch + 1,
                losses["train"][-1],
                losses["valid"][-1],
            )
    t_fit = time.perf_counter() - t_fit
    model.eval()
    ks = tuple(cfg.recall_ks)
    va_pos = torch.from_numpy(pos_rows[va])
    recall = recall_at_k(embed_users(model, valid_users), embed_items(model, item_t), va_pos, ks)
    baselines = {
        "untrained": recall_at_k(
            embed_users(untrained, valid_users), embed_items(untrained, item_t), va_pos, ks
        ),
        "popularity": popularity_recall(counts, pos_rows[va], ks, cfg.seed),
        "random": {str(k): min(1.0, k / len(items)) for k in ks},
    }
    folder = cfg.folder()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / MODEL_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(config_to_dict(cfg), indent=2))
    vocabs.save(folder / VOCAB_FILE)
    items.to_parquet(folder / ITEMS_FILE, index=False)
    ts = inter["event_timestamp"]
    metrics = {
        "objective": cfg.objective,
        "rows": {"train": len(tr), "valid": len(va), "dropped_unknown_items": dropped},
        "weight_sum": {
            "train": round(float(weight[tr].sum()), 3),
            "valid": round(float(weight[va].sum()), 3),
        },
        "users": int(inter["user_id"].nunique()),
        "items": len(items),
        "items_with_train_positives": int((counts > 0).sum()),
        "window": {
            "start": ts.min().isoformat(),
            "split": ts[is_valid].min().isoformat(),
            "end": ts.max().isoformat(),
        },
        "loss": losses,
        "recall": recall,
        "baselines": baselines,
        "seconds": {
            "user_features": round(t_feat, 2),
            "fit": round(t_fit, 2),
            "total": round(time.perf_counter() - t0, 2),
        },
        "folder": str(folder),
    }
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    log.info(
        "%s: valid recall %s (untrained %s, popularity %s)",
        cfg.objective,
        recall,
        baselines["untrained"],
        baselines["popularity"],
    )
    return metrics
