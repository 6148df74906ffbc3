"""Export a jaxbert run (or a Hugging Face folder) for transformers and sentence-transformers.

    python scripts/export.py --model runs/sbert_small --out exported/sbert_small
    python scripts/export.py --model path/to/hf_or_sentence_transformers_folder --out exported/x

    python scripts/export.py --deploy deploy/sbert_small --model runs/sbert_small
    python scripts/export.py --deploy deploy/sbert_small_int8 --model runs/sbert_small \
        --quantize int8

The folder loads with `transformers.BertModel.from_pretrained(out)` and
`sentence_transformers.SentenceTransformer(out)`. A run exports its best checkpoint: the encoder,
its pooling and normalisation, and the MLM/NSP heads of a pretraining run.

--deploy writes a self-contained bundle for a CPU host instead (jaxbert.deploy): the model as
16-bit safetensors with its NLI head, app.py, the jaxbert wheel, CPU-only requirements, a
Dockerfile and Streamlit's config; `streamlit run app.py -- --model model` runs it. With
--quantize int8 (or bfloat16) the app serves the encoder's dense layers quantised (served.json
records it; the parameters on disk stay float16).
"""

import argparse
import logging

from jaxbert import checkpoint, cli, deploy, hf
from jaxbert.serve import QUANTIZE_MODES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run directory, or HF / ST folder")
    parser.add_argument("--out", help="output folder (Hugging Face / sentence-transformers)")
    parser.add_argument("--deploy", help="output folder of a deployment bundle (app + model)")
    parser.add_argument(
        "--serve_dtype",
        default=deploy.SERVE_DTYPE,
        choices=deploy.SERVE_DTYPES,
        help="--deploy: compute dtype the bundle serves in (parameters are stored as float16)",
    )
    parser.add_argument(
        "--quantize",
        default="none",
        choices=QUANTIZE_MODES,
        help="--deploy: serve the dense layers as int8 or bfloat16 (recorded in served.json)",
    )
    args = parser.parse_args()
    if args.quantize != "none" and not args.deploy:
        parser.error("--quantize applies to --deploy bundles (a Hugging Face folder is float)")
    if bool(args.out) == bool(args.deploy):
        parser.error("give one of --out (Hugging Face folder) or --deploy (app bundle)")
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    if args.deploy:
        bundle = deploy.write_bundle(args.model, args.deploy, args.serve_dtype, args.quantize)
        logging.info(
            "wrote %s: %d files, %.1f MB; run it with: cd %s && streamlit run app.py -- "
            "--model model",
            bundle["path"],
            len(bundle["files"]),
            bundle["bytes"] / 1e6,
            bundle["path"],
        )
        return

    source = args.model.removeprefix("hf:")
    # A run directory has a config.json too (the experiment's): its checkpoints tell it apart.
    if args.model.startswith("hf:") or not checkpoint.has_checkpoint(source):
        loaded = hf.load_pretrained(source)
        config, params, tokenizer = loaded.config, loaded.params, loaded.tokenizer
        pooling, normalize, max_seq_length = loaded.pooling, loaded.normalize, loaded.max_seq_length
    else:
        params, meta, step = checkpoint.load_params(source, which="best")
        logging.info("exporting %s, step %d", source, step)
        config, tokenizer = checkpoint.model_and_tokenizer(meta)
        pretraining = meta.get("kind") == "pretraining"
        pooling = "mean" if pretraining else meta.get("pooling", "mean")
        normalize = False if pretraining else meta.get("normalize", False)
        max_seq_length = min(meta.get("max_len", 128), config.max_position_embeddings)
    hf.export_pretrained(
        args.out,
        config=config,
        params=params,
        tokenizer=tokenizer,
        pooling=pooling,
        normalize=normalize,
        max_seq_length=max_seq_length,
    )
    logging.info("wrote %s", args.out)


if __name__ == "__main__":
    cli.exit_on_input_error(main)()
