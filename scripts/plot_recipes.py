"""Dev quality against compute for the recipes of scripts/reproduce.sh, in one PNG.

    python scripts/plot_recipes.py --out docs/recipes.png scratch=runs/scratch \
        distill=runs/distill nli=runs/nli
    python scripts/plot_recipes.py --budgets --out docs/budgets.png \
        runs/emb/s100b runs/emb/s300b runs/emb/scratch \
        --before=runs/budget/s100,runs/budget/s300,runs/scratch1200

Each NAME=WORKDIR is a reproduce.sh work directory (or any recipe's last run directory); its
stages, found by following each run's init_from back from WORKDIR/final, are drawn in order
against training minutes. With --budgets, each WORKDIR is a finished scratch recipe run at
another pretraining budget (PRETRAIN_STEPS=N bash scripts/reproduce.sh scratch WORKDIR), drawn as
final STS-B and SNLI dev scores against pretraining tokens.
"""

import json
import os

from absl import flags

from jaxbert import cli, plots

OUT = flags.DEFINE_string("out", "recipes.png", "PNG to write")
BUDGETS = flags.DEFINE_bool("budgets", False, "scratch runs at several pretraining budgets")
BEFORE = flags.DEFINE_list("before", [], "--budgets: an earlier recipe's WORKDIRs, drawn in grey")
# Dashed lines on the budgets plot: issue 14's targets and the lexical baselines
# (scripts/baselines.py, README "Results").
REFERENCES = {
    "stsb": [("target", 78.0), ("TF-IDF cosine", 71.95)],
    "snli": [("target", 72.0), ("bag-of-words LR", 63.1)],
}


def main(argv):
    if BUDGETS.value:
        points = plots.budget_points(argv[1:])
        if not points:
            raise ValueError("name at least one scratch WORKDIR")
        for point in points:
            print(json.dumps(point))
        before = plots.budget_points(BEFORE.value) if BEFORE.value else None
        print(plots.plot_budgets(points, OUT.value, REFERENCES, before))
        return
    recipes = {}
    for item in argv[1:]:
        name, _, work = item.partition("=")
        if not work or not os.path.isdir(work):
            raise ValueError(f"expected NAME=WORKDIR with an existing WORKDIR, got {item!r}")
        recipes[name] = plots.recipe_stages(work)
    if not recipes:
        raise ValueError("name at least one recipe: NAME=WORKDIR")
    print(plots.plot_recipe_progress(recipes, OUT.value))


if __name__ == "__main__":
    cli.run(main)
