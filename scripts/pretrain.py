"""Pretrain a BERT encoder with masked language modelling + next-sentence prediction.

    python scripts/pretrain.py --config configs/pretrain_tiny.py --workdir runs/pretrain_tiny
    python scripts/pretrain.py --config configs/pretrain_small.py --workdir runs/wiki_small \
        --config.data.train_files='../shared/data/pretrain_text/*.jsonl.gz'

Rerunning the same command resumes the run from its last checkpoint.
"""

from absl import app

from jaxbert import cli, pretrain

CONFIG, WORKDIR = cli.define_config_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup()
    pretrain.pretrain(CONFIG.value, WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
