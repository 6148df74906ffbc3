"""Export a jaxbert run (or a Hugging Face folder) for transformers and sentence-transformers.

    python scripts/export.py --model runs/sbert_small --out exported/sbert_small
    python scripts/export.py --model path/to/hf_or_sentence_transformers_folder --out exported/x

The folder loads with `transformers.BertModel.from_pretrained(out)` and
`sentence_transformers.SentenceTransformer(out)`. A run exports its best checkpoint: the encoder,
its pooling and normalisation, and the MLM/NSP heads of a pretraining run.
"""

import argparse
import logging

from jaxbert import checkpoint, cli, hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run directory, or HF / ST folder")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )

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
