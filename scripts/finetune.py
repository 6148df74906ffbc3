"""Fine-tune a Sentence-BERT siamese encoder on sentence pairs (NLI or STS).

    python scripts/finetune.py --config configs/sbert_nli_small.py --workdir runs/sbert_small \
        --config.init_from=runs/wiki_small

Rerunning the same command resumes the run from its last checkpoint.
"""

from absl import app

from jaxbert import cli, finetune

CONFIG, WORKDIR = cli.define_config_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup()
    finetune.finetune(CONFIG.value, WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
