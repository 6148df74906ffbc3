"""Dev quality against training time for the recipes of scripts/reproduce.sh, in one PNG.

    python scripts/plot_recipes.py --out docs/recipes.png scratch=runs/scratch \
        distill=runs/distill nli=runs/nli

Each NAME=WORKDIR is a reproduce.sh work directory; its stages are read in the recipe's order.
"""

import os

from absl import flags

from jaxbert import cli, plots

OUT = flags.DEFINE_string("out", "recipes.png", "PNG to write")
# The stages of each recipe in scripts/reproduce.sh, in order.
STAGES = ("pretrain", "mnr", "sts", "student", "head", "final")


def main(argv):
    recipes = {}
    for item in argv[1:]:
        name, _, work = item.partition("=")
        if not work or not os.path.isdir(work):
            raise ValueError(f"expected NAME=WORKDIR with an existing WORKDIR, got {item!r}")
        recipes[name] = [os.path.join(work, stage) for stage in STAGES]
    if not recipes:
        raise ValueError("name at least one recipe: NAME=WORKDIR")
    print(plots.plot_recipe_progress(recipes, OUT.value))


if __name__ == "__main__":
    cli.run(main)
