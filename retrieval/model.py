"""The two-tower retrieval model (paper 3.6.1): towers, sampled-softmax loss, training, loading.

- :class:`TwoTower`: a user tower (profile embeddings, mean bags of the user's active advertisers,
  top-category tokens and top brands, a few counts -> MLP) and an item tower (item id, advertiser id,
  category tokens, brand tokens, price bucket -> MLP), each ending in an L2-normalised
  ``embedding_dim`` vector, so a dot product is a cosine and a faiss inner-product index serves it.
  With ``share_embeddings`` the advertiser, category and brand tables are one table each, used by
  both towers (a user's past advertisers and an ad's advertiser then live in one space).
- :func:`retrieval_logits` / :func:`sampled_softmax_loss`: temperature-scaled dot products of each
  user with the batch's positive items (in-batch negatives) and with ``mixed_negatives`` items drawn
  uniformly from the catalogue (mixed negative sampling, Yang et al. 2020); optional logQ correction
  (Yi et al. 2019) by each item's expected count among the batch's candidates; an in-batch or mixed
  candidate equal to a row's own positive item is masked out (never a negative of that row).
- :func:`train`: items, positives of the objective, point-in-time user features (Feast),
  vocabularies; AdamW over weighted sampled softmax; a time hold-out with recall@k over the whole
  catalogue; the model folder ``<out>/<objective>/`` (``model.pt``, ``config.json``,
  ``vocab.json``, ``items.parquet``, ``metrics.json``).
- :func:`load` -> :class:`TrainedTwoTower` with ``embed_items`` and ``embed_users`` (the same code
  path for historical and online user features).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from retrieval.config import RetrievalConfig, config_from_dict, config_to_dict
from retrieval.data import (
    Vocabs,
    encode_items,
    encode_users,
    first_behavior_snapshot,
    interactions,
    item_features,
    user_features,
)

log = logging.getLogger(__name__)

N_DENSE = 3  # dense user inputs of encode_users: log1p(n_attributed), log1p(n_matched), has snapshot
MODEL_FILE, CONFIG_FILE, VOCAB_FILE, ITEMS_FILE, METRICS_FILE = (
    "model.pt",
    "config.json",
    "vocab.json",
    "items.parquet",
    "metrics.json",
)


# --------------------------------------------------------------------------------------------- model


def _mlp(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def _bag(n: int, dim: int) -> nn.EmbeddingBag:
    """Mean bag over 0-padded index rows (an all-padding row gives the zero vector)."""
    return nn.EmbeddingBag(n, dim, mode="mean", padding_idx=0)


class TwoTower(nn.Module):
    """User and item towers mapping encoded features to unit vectors of ``embedding_dim``."""

    def __init__(
        self,
        sizes: dict[str, int],
        feature_dim: int = 32,
        embedding_dim: int = 64,
        hidden: tuple[int, ...] = (128,),
        share_embeddings: bool = True,
    ) -> None:
        """Build the towers.

        Args:
            sizes: embedding table sizes (:meth:`retrieval.data.Vocabs.sizes`: item, advertiser,
                category, brand, gender, user_state, country, age, price).
            feature_dim: dimension of every input embedding.
            embedding_dim: output dimension of both towers.
            hidden: hidden layer sizes of each tower's MLP.
            share_embeddings: one advertiser / category / brand table for both towers.
        """
        super().__init__()
        d = feature_dim
        self.embedding_dim = embedding_dim
        # user tower
        self.gender = nn.Embedding(sizes["gender"], d, padding_idx=0)
        self.user_state = nn.Embedding(sizes["user_state"], d, padding_idx=0)
        self.country = nn.Embedding(sizes["country"], d, padding_idx=0)
        self.age = nn.Embedding(sizes["age"], d, padding_idx=0)
        self.user_advertisers = _bag(sizes["advertiser"], d)
        self.user_categories = _bag(sizes["category"], d)
        self.user_brands = _bag(sizes["brand"], d)
        self.user_mlp = _mlp(7 * d + N_DENSE, hidden, embedding_dim)
        # item tower (bags over one id are plain lookups; sharing reuses the user tower's tables)
        self.item = nn.Embedding(sizes["item"], d, padding_idx=0)
        self.price = nn.Embedding(sizes["price"], d, padding_idx=0)
        if share_embeddings:
            self.item_advertiser, self.item_categories, self.item_brands = (
                self.user_advertisers,
                self.user_categories,
                self.user_brands,
            )
        else:
            self.item_advertiser = _bag(sizes["advertiser"], d)
            self.item_categories = _bag(sizes["category"], d)
            self.item_brands = _bag(sizes["brand"], d)
        self.item_mlp = _mlp(5 * d, hidden, embedding_dim)

    def user_vectors(self, u: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit user vectors [n, embedding_dim] from :func:`retrieval.data.encode_users` tensors."""
        x = torch.cat(
            [
                self.gender(u["gender"]),
                self.user_state(u["user_state"]),
                self.country(u["country"]),
                self.age(u["age"]),
                self.user_advertisers(u["advertisers"]),
                self.user_categories(u["categories"]),
                self.user_brands(u["brands"]),
                u["dense"],
            ],
            dim=1,
        )
        return F.normalize(self.user_mlp(x), dim=1)

    def item_vectors(self, it: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit item vectors [n, embedding_dim] from :func:`retrieval.data.encode_items` tensors."""
        x = torch.cat(
            [
                self.item(it["item"]),
                self.item_advertiser(it["advertiser"].unsqueeze(1)),
                self.item_categories(it["categories"]),
                self.item_brands(it["brands"]),
                self.price(it["price"]),
            ],
            dim=1,
        )
        return F.normalize(self.item_mlp(x), dim=1)


def _tensors(arrays: dict[str, np.ndarray], rows: Any = None) -> dict[str, torch.Tensor]:
    """Numpy arrays (optionally a row selection) as torch tensors."""
    return {
        k: torch.from_numpy(np.ascontiguousarray(v if rows is None else v[rows])) for k, v in arrays.items()
    }


# ---------------------------------------------------------------------------------------------- loss


def retrieval_logits(
    user: torch.Tensor,
    pos: torch.Tensor,
    pos_ids: torch.Tensor,
    neg: torch.Tensor | None = None,
    neg_ids: torch.Tensor | None = None,
    temperature: float = 0.05,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits [B, B + M] of each row's user against the batch's positives, then the mixed negatives.

    Column ``i`` of row ``i`` is the row's positive. A column whose item equals the row's own
    positive item (a duplicate in the batch, or a mixed negative that happens to be it) is set to
    -inf, so the softmax never pushes a user away from its own positive.

    Args:
        user: user vectors [B, d].
        pos: vectors of each row's positive item [B, d].
        pos_ids: item ids (or catalogue rows) of the positives [B].
        neg: vectors of uniformly sampled catalogue items [M, d] (None: in-batch negatives only).
        neg_ids: their item ids [M].
        temperature: dot products are divided by it.
        pos_log_q: log sampling probability (expected count among the candidates) of each in-batch
            item [B]; subtracted from its column, the diagonal included (logQ correction).
        neg_log_q: the same for the mixed negatives [M].
    """
    logits = user @ pos.T / temperature
    if pos_log_q is not None:
        logits = logits - pos_log_q.unsqueeze(0)
    same = pos_ids.unsqueeze(0) == pos_ids.unsqueeze(1)
    same.fill_diagonal_(False)
    parts, masks = [logits], [same]
    if neg is not None and neg.shape[0] > 0:
        if neg_ids is None:
            raise ValueError("neg_ids are needed with mixed negatives (to mask a row's own positive)")
        nl = user @ neg.T / temperature
        if neg_log_q is not None:
            nl = nl - neg_log_q.unsqueeze(0)
        parts.append(nl)
        masks.append(neg_ids.unsqueeze(0) == pos_ids.unsqueeze(1))
    return torch.cat(parts, dim=1).masked_fill(torch.cat(masks, dim=1), float("-inf"))


def sampled_softmax_loss(logits: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean cross-entropy of :func:`retrieval_logits` with row ``i``'s target in column ``i``."""
    ce = F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device), reduction="none")
    if weight is None:
        return ce.mean()
    return (ce * weight).sum() / weight.sum().clamp_min(1e-12)


def item_log_q(counts: np.ndarray, batch_size: int, mixed_negatives: int) -> np.ndarray:
    """log of each catalogue item's expected count among one batch's candidates.

    ``batch_size * p_j + mixed_negatives / n_items`` with ``p_j`` the item's share of the training
    positives (floored at half a count, so items never seen as positives stay finite): the mixed
    sampling distribution of in-batch plus uniform negatives.
    """
    n = max(float(counts.sum()), 1.0)
    p = np.maximum(counts.astype(float), 0.5) / n
    return np.log(batch_size * p + mixed_negatives / max(len(counts), 1)).astype(np.float32)


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


def _time_split(ts: pd.Series, valid_fraction: float) -> np.ndarray:
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
    u = model.user_vectors(_tensors(users, rows))
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


def _embed_items(model: TwoTower, items: dict[str, torch.Tensor], chunk: int = 4096) -> torch.Tensor:
    n = len(items["item"])
    with torch.no_grad():
        return (
            torch.cat(
                [
                    model.item_vectors({k: t[s : s + chunk] for k, t in items.items()})
                    for s in range(0, n, chunk)
                ]
            )
            if n
            else torch.zeros(0, model.embedding_dim)
        )


def _embed_users(model: TwoTower, users: dict[str, np.ndarray], chunk: int = 4096) -> torch.Tensor:
    n = len(users["gender"])
    with torch.no_grad():
        return (
            torch.cat([model.user_vectors(_tensors(users, slice(s, s + chunk))) for s in range(0, n, chunk)])
            if n
            else torch.zeros(0, model.embedding_dim)
        )


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
    is_valid = _time_split(inter["event_timestamp"], cfg.valid_fraction)
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
    item_t = _tensors(encode_items(items, vocabs))
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
    recall = recall_at_k(_embed_users(model, valid_users), _embed_items(model, item_t), va_pos, ks)
    baselines = {
        "untrained": recall_at_k(
            _embed_users(untrained, valid_users), _embed_items(untrained, item_t), va_pos, ks
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


# -------------------------------------------------------------------------------------------- loading


@dataclass
class TrainedTwoTower:
    """A trained model with its vocabularies, configuration and the catalogue it was trained on."""

    model: TwoTower  # in eval mode
    vocabs: Vocabs  # token -> index maps of the inputs
    cfg: RetrievalConfig  # the training configuration
    items: pd.DataFrame  # the catalogue (retrieval.data.item_features) at training time

    def embed_items(self, items: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Item ids (int64 [n]) and unit vectors (float32 [n, d]) of a catalogue (default: the saved one).

        Items unknown to the vocabularies (added after training) get the unknown id embedding and
        are still embedded from their advertiser, category, brand and price.
        """
        cat = self.items if items is None else items
        vecs = _embed_items(self.model, _tensors(encode_items(cat, self.vocabs)))
        return cat["item_id"].to_numpy(np.int64), vecs.numpy().astype(np.float32)

    def encode_users(self, user_frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The index arrays the user tower reads (see :func:`retrieval.data.encode_users`)."""
        return encode_users(user_frame, self.vocabs, self.cfg.max_history)

    def embed_users(self, user_frame: pd.DataFrame) -> np.ndarray:
        """Unit user vectors (float32 [n, d]) from a frame with the user feature columns.

        The frame comes from :func:`retrieval.data.user_features` (historical) or
        :func:`retrieval.data.online_user_features` (online); both take the same path.
        """
        return _embed_users(self.model, self.encode_users(user_frame)).numpy().astype(np.float32)


def load(folder: Path) -> TrainedTwoTower:
    """The model written by :func:`train` in ``folder`` (``<out>/<objective>``).

    Raises:
        FileNotFoundError: a model file is missing (names it).
    """
    folder = Path(folder)
    for name in (MODEL_FILE, CONFIG_FILE, VOCAB_FILE, ITEMS_FILE):
        if not (folder / name).exists():
            raise FileNotFoundError(
                f"{folder / name} not found: train the model first (retrieval.model.train)"
            )
    cfg = config_from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    vocabs = Vocabs.load(folder / VOCAB_FILE)
    model = TwoTower(
        vocabs.sizes(), cfg.feature_dim, cfg.embedding_dim, tuple(cfg.hidden), cfg.share_embeddings
    )
    model.load_state_dict(torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True))
    return TrainedTwoTower(model.eval(), vocabs, cfg, pd.read_parquet(folder / ITEMS_FILE))
