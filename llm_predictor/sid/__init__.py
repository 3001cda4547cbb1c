"""Semantic IDs (paper 3.5): item text embeddings -> RQ-VAE codes -> SID tokens -> per-user SID sequences.

One module per idea; callers import from the defining module (nothing is re-exported here):

* :mod:`~llm_predictor.sid.tokens`: the SID string format (one token per level, ``<a_12><b_3><c_40><d_0>``)
  and the SID token vocabulary;
* :mod:`~llm_predictor.sid.artifacts`: the files of a SID build folder and the readers of its SID map and
  token vocabulary (what continued pre-training, ``llm_predictor.train.cpt``, needs);
* :mod:`~llm_predictor.sid.items`: item text (title + category + brand) and the sentence-transformers embedder;
* :mod:`~llm_predictor.sid.rqvae`: the residual-quantised autoencoder and the code tuples it assigns
  (collision level, codebook usage, collision statistics);
* :mod:`~llm_predictor.sid.build`: :func:`~llm_predictor.sid.build.build_sids`, training the RQ-VAE on the
  catalogue and writing unique SIDs;
* :mod:`~llm_predictor.sid.attach`: the per-user ``sid_sequences`` column added to compiled examples.
"""
