"""Evaluate a trained model on NLI / STS dev sets, or a pretraining run's MLM and NSP.

    python scripts/evaluate.py --model runs/sbert_small --task snli --split dev
    python scripts/evaluate.py --model runs/sbert_small --task mnli --split dev   # both dev sets
    python scripts/evaluate.py --model runs/sbert_small --task stsb               # also: sick
    python scripts/evaluate.py --model hf:path/to/all-MiniLM-L6-v2 --task stsb
    python scripts/evaluate.py --model runs/wiki_small --task mlm --files 'held_out/*.txt'
    # people's judgements from the app: every model re-scored on the same judged pairs
    python scripts/evaluate.py --task feedback --db feedback.sqlite3 --model runs/a --model runs/b
    python scripts/evaluate.py --task feedback --db feedback.sqlite3 --export_csv pairs.csv

Tables print to the console; JSON (and confusion-matrix PNGs) go to <model>/eval/ or --out
(--task feedback: feedback_report/ or --out, with a comparison PNG).
"""

import os
import re

from absl import app, flags

from jaxbert import cli, evaluate, feedback_report, plots
from jaxbert.data import nli
from jaxbert.serve import SentenceModel

MODEL = flags.DEFINE_multi_string(
    "model", [], "run directory, or hf:<folder> (Hugging Face / ST); --task feedback: repeat it"
)
TASK = flags.DEFINE_enum("task", "snli", [*evaluate.TASKS, "mlm", "feedback"], "what to evaluate")
SPLIT = flags.DEFINE_string("split", "dev", "split of the task (dev, dev_matched, train, ...)")
DATA = flags.DEFINE_string(
    "data", "", "instead of the task's local files: a hub name, tfds:<name> or file(s)"
)
DATA_ROOT = flags.DEFINE_string("data_root", "", "folder of the local datasets (../shared/data)")
FILES = flags.DEFINE_string("files", "", "text files for --task mlm")
LABEL_MAP = flags.DEFINE_string(
    "label_map", "", "for --data with numeric label codes: '0:entailment,1:neutral,2:contradiction'"
)
TEMPERATURE = flags.DEFINE_float(
    "temperature",
    0.0,
    "the NLI classifier's temperature (0: the model's own, fitted after "
    "fine-tuning; 1: untempered)",
)
MAX_PAIRS = flags.DEFINE_integer("max_pairs", 0, "evaluate on the first N pairs (0 = all)")
OUT = flags.DEFINE_string("out", "", "output folder (default <model>/eval)")
DB = flags.DEFINE_string("db", "", "--task feedback: the app's judgements database")
EXPORT_CSV = flags.DEFINE_string(
    "export_csv", "", "--task feedback: write people's labels as training pairs to this CSV"
)
EXPORT_KIND = flags.DEFINE_enum(
    "export_kind", "nli", ["nli", "similarity"], "--export_csv: labels (nli) or 0-5 scores"
)


def feedback_main() -> None:
    """Every --model re-scored on the pairs people judged in the app; or the CSV export."""
    from jaxbert.feedback import FeedbackStore

    if not DB.value or not os.path.exists(DB.value):
        raise app.UsageError(
            f"--task feedback needs --db FILE (an existing database): {DB.value!r}"
        )
    judged = feedback_report.judged_pairs(FeedbackStore(DB.value).rows())
    if EXPORT_CSV.value:
        count = feedback_report.export_csv(judged, EXPORT_CSV.value, EXPORT_KIND.value)
        print(f"wrote {count} {EXPORT_KIND.value} pairs to {EXPORT_CSV.value}")
    if not MODEL.value:
        if EXPORT_CSV.value:
            return
        raise app.UsageError("--task feedback needs --model (repeat it to compare models)")
    models = {path: SentenceModel.load(path) for path in dict.fromkeys(MODEL.value)}
    report = feedback_report.compare(models, judged)
    report["db"] = DB.value
    print(feedback_report.format_comparison(report))
    out = OUT.value or "feedback_report"
    print("saved", evaluate.save_report(report, out, "feedback"))
    print("saved", plots.plot_feedback_comparison(report, os.path.join(out, "feedback.png")))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup()
    if TASK.value == "feedback":
        return feedback_main()
    if len(MODEL.value) != 1:
        raise app.UsageError(f"--task {TASK.value} takes one --model, got {len(MODEL.value)}")
    model_path = MODEL.value[0]
    out = OUT.value or (os.path.join(model_path, "eval") if os.path.isdir(model_path) else "eval")
    if TASK.value == "mlm":
        if not FILES.value:
            raise app.UsageError("--task mlm needs --files")
        report = evaluate.evaluate_pretraining(model_path, FILES.value)
        print(evaluate.format_report(report))
        print("saved", evaluate.save_report(report, out, "mlm"))
        return
    splits = evaluate.TASKS[TASK.value]
    if not DATA.value and SPLIT.value not in splits:
        raise app.UsageError(f"--task {TASK.value} has splits {sorted(splits)}")
    specs = [DATA.value] if DATA.value else splits[SPLIT.value]
    model = SentenceModel.load(model_path)
    if TEMPERATURE.value:
        model = model.with_temperature(TEMPERATURE.value)
    # --data is read as the task's kind (STS scores for stsb / sick, not NLI labels), unless
    # its own preset or file name already says it.
    task_source = nli.PRESETS[next(iter(splits.values()))[0]]
    for spec in specs:
        source = nli.resolve(spec, root=DATA_ROOT.value or None, default_label_map=LABEL_MAP.value)
        if DATA.value and source.kind != task_source.kind:
            kind = dict(kind=task_source.kind, score_range=task_source.score_range)
            source = nli.resolve(spec, root=DATA_ROOT.value or None, **kind)
        dataset = nli.read_pairs(source, max_rows=MAX_PAIRS.value)
        report = evaluate.evaluate_dataset(model, dataset)
        report["model"] = model.source
        print(evaluate.format_report(report))
        # The file or preset name without its extensions ("multinli_1.0_dev_matched").
        stem = re.sub(r"(\.(csv|tsv|txt|jsonl?|parquet))?(\.gz)?$", "", os.path.basename(spec))
        name = f"{TASK.value}_{stem}"
        print("saved", evaluate.save_report(report, out, name))


if __name__ == "__main__":
    cli.run(main)
