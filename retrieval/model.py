"""The two-tower retrieval model (paper 3.6.1): towers, sampled-softmax loss, embedding, loading.

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
- :func:`tensors`, :func:`embed_items`, :func:`embed_users`: encoded arrays as tensors, and a model's
  unit vectors of them (in chunks, without gradients).
- :func:`load` -> :class:`TrainedTwoTower` with ``embed_items`` and ``embed_users`` (the same code
  path for historical and online user features), from the model folder ``<out>/<objective>/``
  (``model.pt``, ``config.json``, ``vocab.json``, ``items.parquet``, ``metrics.json``) that
  :func:`retrieval.train.train` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from retrieval.config import RetrievalConfig, config_from_dict
from retrieval.vocab import Vocabs, encode_items, encode_users

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
            sizes: embedding table sizes (:meth:`retrieval.vocab.Vocabs.sizes`: item, advertiser,
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
        """Unit user vectors [n, embedding_dim] from :func:`retrieval.vocab.encode_users` tensors."""
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
        """Unit item vectors [n, embedding_dim] from :func:`retrieval.vocab.encode_items` tensors."""
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


def tensors(arrays: dict[str, np.ndarray], rows: Any = None) -> dict[str, torch.Tensor]:
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


# ------------------------------------------------------------------------------------------ embedding


def embed_items(model: TwoTower, items: dict[str, torch.Tensor], chunk: int = 4096) -> torch.Tensor:
    """Unit item vectors [n, d] of :func:`retrieval.vocab.encode_items` tensors, ``chunk`` rows at a time."""
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


def embed_users(model: TwoTower, users: dict[str, np.ndarray], chunk: int = 4096) -> torch.Tensor:
    """Unit user vectors [n, d] of :func:`retrieval.vocab.encode_users` arrays, ``chunk`` rows at a time."""
    n = len(users["gender"])
    with torch.no_grad():
        return (
            torch.cat([model.user_vectors(tensors(users, slice(s, s + chunk))) for s in range(0, n, chunk)])
            if n
            else torch.zeros(0, model.embedding_dim)
        )


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
        vecs = embed_items(self.model, tensors(encode_items(cat, self.vocabs)))
        return cat["item_id"].to_numpy(np.int64), vecs.numpy().astype(np.float32)

    def encode_users(self, user_frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The index arrays the user tower reads (see :func:`retrieval.vocab.encode_users`)."""
        return encode_users(user_frame, self.vocabs, self.cfg.max_history)

    def embed_users(self, user_frame: pd.DataFrame) -> np.ndarray:
        """Unit user vectors (float32 [n, d]) from a frame with the user feature columns.

        The frame comes from :func:`retrieval.data.user_features` (historical) or
        :func:`retrieval.data.online_user_features` (online); both take the same path.
        """
        return embed_users(self.model, self.encode_users(user_frame)).numpy().astype(np.float32)


def load(folder: Path) -> TrainedTwoTower:
    """The model written by :func:`retrieval.train.train` in ``folder`` (``<out>/<objective>``).

    Raises:
        FileNotFoundError: a model file is missing (names it).
    """
    folder = Path(folder)
    for name in (MODEL_FILE, CONFIG_FILE, VOCAB_FILE, ITEMS_FILE):
        if not (folder / name).exists():
            raise FileNotFoundError(
                f"{folder / name} not found: train the model first (retrieval.train.train)"
            )
    cfg = config_from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    vocabs = Vocabs.load(folder / VOCAB_FILE)
    model = TwoTower(
        vocabs.sizes(), cfg.feature_dim, cfg.embedding_dim, tuple(cfg.hidden), cfg.share_embeddings
    )
    model.load_state_dict(torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True))
    return TrainedTwoTower(model.eval(), vocabs, cfg, pd.read_parquet(folder / ITEMS_FILE))
