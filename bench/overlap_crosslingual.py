"""Calibrate the cross-lingual step of the overlap check (polyinstruct/evalsets/crosslingual.py).

Texts, every layer's mean-pooled states (``polyinstruct.infer.hidden``, first ``--max-length`` tokens):

- calibration: the embedded instructions' user turns (same ids in en fr es ru bg zh: a pair of
  languages with the same id is a translation, any other pair is not) and 20 embedded parallel
  sentences in six languages (whose mean state is the score's fixed centre, ``centre_sentences``);
- held out: ``resources/data/lid_heldout`` (58 texts written for the project in 8 languages, the
  same id in every language; used only to measure language identification, never for training
  or for this calibration).

Per layer: the centred cosine of every pair of texts (translations in different languages are
positives; texts with different ids, in any languages, are negatives). The threshold is set on
the calibration pairs only: the smallest value above every calibration negative, plus
``--margin``, because a check compares millions of pairs and one false flag in 10^5 pairs is
already tens of false flags on the embedded data. Then precision and recall on the held-out
pairs at that threshold. The layer is chosen on the calibration pairs too (highest recall at its
threshold); the held-out numbers only report how that choice does on texts it never saw.

    python bench/overlap_crosslingual.py [--model gemma-3-270m] [--max-length 64] [--states states.npz]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np


def texts(n_ids: int = 60) -> tuple[dict, dict, list[str]]:
    from polyinstruct.data import embedded

    inst = {lang: {c.id: c.messages[0].content for c in embedded.load_instructions(lang)[:n_ids]}
            for lang in embedded.instruction_languages()}
    held: dict[str, dict[str, str]] = {}
    folder = embedded.DATA_DIR / "lid_heldout"
    for f in sorted(folder.glob("*.jsonl")):
        rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
        held[f.stem] = {r["id"].rsplit("-", 1)[-1]: r["text"] for r in rows}
    from polyinstruct.evalsets.crosslingual import centre_sentences

    return inst, held, centre_sentences()


def pair_scores(vec: dict[str, np.ndarray], groups: dict[str, dict[str, str]], centre: np.ndarray):
    """Centred cosines of all pairs of texts in ``groups`` (lang -> id -> text): positives (same id, other
    language) and negatives (other id, any language)."""
    items = [(lang, i, vec[t]) for lang, m in groups.items() for i, t in m.items()]
    x = np.stack([v for *_, v in items]) - centre
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    ids = np.array([i for _, i, _ in items])
    langs = np.array([lang for lang, _, _ in items])
    iu = np.triu_indices(len(items), 1)
    same_id = (ids[:, None] == ids[None, :])[iu]
    other_lang = (langs[:, None] != langs[None, :])[iu]
    s = sim[iu]
    return s[same_id & other_lang], s[~same_id]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--calibration-ids", type=int, default=30, help="instruction ids used for calibration")
    ap.add_argument("--upto-layer", type=int, default=14, help="run only the first N layers (states of "
                    "layers < N are those of the whole model; a loaded CPU thanks you)")
    ap.add_argument("--margin", type=float, default=0.02)
    ap.add_argument("--states", default=None, help="npz cache of the pooled states (written when absent)")
    args = ap.parse_args()
    inst, held, sents = texts(args.calibration_ids)
    all_texts = sorted({t for g in (inst, held) for m in g.values() for t in m.values()} | set(sents))
    t0 = time.perf_counter()
    if args.states and Path(args.states).is_file():
        with np.load(args.states, allow_pickle=False) as z:
            assert list(z["texts"]) == all_texts, "states cache is for other texts"
            states = z["states"]
    else:
        import torch

        from polyinstruct.infer.hidden import load_model_and_tokenizer, pooled_hidden_states

        torch.manual_seed(0)
        model, tok, _ = load_model_and_tokenizer(args.model, dtype="float32")
        body = model.model
        body.layers = body.layers[:args.upto_layer]
        model.config.num_hidden_layers = args.upto_layer
        states = pooled_hidden_states(model, tok, all_texts, batch_size=16, max_length=args.max_length,
                                      skip_first=True)
        if args.states:
            np.savez(args.states, texts=np.array(all_texts), states=states)
    print(f"{len(all_texts)} texts embedded in {time.perf_counter() - t0:.0f} s (max_length {args.max_length})")
    index = {t: k for k, t in enumerate(all_texts)}
    rows = []
    for layer in range(1, states.shape[0] - 1):  # the last returned state is normed: not comparable
        vec = {t: states[layer, k] for t, k in index.items()}
        centre = np.mean([vec[s] for s in sents], axis=0)
        pos, neg = pair_scores(vec, inst, centre)
        thr = float(neg.max()) + args.margin
        hpos, hneg = pair_scores(vec, held, centre)
        tp, fp = int((hpos >= thr).sum()), int((hneg >= thr).sum())
        rows.append({"layer": layer, "threshold": round(thr, 3), "cal_recall": float((pos >= thr).mean()),
                     "cal_pos": len(pos), "cal_neg": len(neg), "held_recall": tp / len(hpos),
                     "held_precision": tp / (tp + fp) if tp + fp else 1.0, "held_fp": fp, "held_pos": len(hpos),
                     "held_neg": len(hneg), "held_neg_max": round(float(hneg.max()), 3)})
    best = max(rows, key=lambda r: r["cal_recall"])
    print("| layer | threshold | calibration recall | held-out recall | held-out precision (false flags) |")
    print("|---|---|---|---|---|")
    for r in rows:
        mark = " **chosen**" if r is best else ""
        print(f"| {r['layer']}{mark} | {r['threshold']:.3f} | {r['cal_recall']:.3f} | {r['held_recall']:.3f} | "
              f"{r['held_precision']:.3f} ({r['held_fp']}) |")
    print(json.dumps(best))
    by_lang = {}
    vec = {t: states[best["layer"], k] for t, k in index.items()}
    centre = np.mean([vec[s] for s in sents], axis=0)
    for a, b in itertools.combinations(sorted(held), 2):
        pos, _ = pair_scores(vec, {a: held[a], b: held[b]}, centre)
        by_lang[f"{a}-{b}"] = round(float((pos >= best["threshold"]).mean()), 3)
    print("held-out recall per language pair:", json.dumps(by_lang))


if __name__ == "__main__":
    main()
