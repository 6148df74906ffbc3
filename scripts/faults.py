"""Fault injection: prints the README "Reliability" table (markdown).

    python scripts/faults.py   # 10 kills per task and every check: about an hour on 2 cores
    python scripts/faults.py --kills 3 --tasks pretraining --scratch /tmp/faults

Each check runs the real entry points on tiny configs (jaxbert/faults.py says which) into
--scratch (a new temp directory by default).
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxbert import faults  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kill -9 trials per task")
    parser.add_argument("--tasks", default="pretraining,fine-tuning")
    parser.add_argument("--checks", default="same,kill,sigterm,corrupt,disk")
    parser.add_argument("--scratch", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kill_at",
        default="step",
        choices=["step", "time"],
        help="kill moments: a random training step, or a random time of the run's wall time",
    )
    args = parser.parse_args()
    scratch = args.scratch or tempfile.mkdtemp(prefix="jaxbert_faults_")
    checks = set(args.checks.split(","))
    rng = np.random.default_rng(args.seed)
    rows = []

    def log(message):
        print(message, file=sys.stderr, flush=True)

    for task in args.tasks.split(","):
        log(f"{task}: two uninterrupted runs")
        verdict, reference, seconds = faults.reproducibility(task, scratch)
        if "same" in checks:
            rows.append((task, "the same command twice (fresh run directories)", verdict))
        if "kill" in checks and args.kills:
            trials = faults.kill_trials(
                task, scratch, reference, seconds, args.kills, rng, log, args.kill_at == "step"
            )
            good = sum(t["ok"] for t in trials)
            phases = {}
            for t in trials:
                phase = t["phase"].split(" (step")[0]
                phases[phase] = phases.get(phase, 0) + 1
            where = ", ".join(f"{n} in {p}" for p, n in sorted(phases.items()))
            resumed = sorted(t["resumed"] for t in trials if t["resumed"] is not None)
            fresh = sum(t["resumed"] is None for t in trials)
            where += f"; reruns resumed from steps {resumed or 'none'}, {fresh} from nothing"
            rows.append(
                (
                    task,
                    f"kill -9 at a random moment, same command again ({where})",
                    f"{good} / {len(trials)} bit-identical (params + optimizer state)",
                )
            )
        if "sigterm" in checks:
            for twice in (False, True):
                log(f"{task}: SIGTERM{' twice' if twice else ''}")
                out = faults.sigterm(task, scratch, reference, twice)
                what = "SIGTERM, then a second one during the save" if twice else "SIGTERM"
                saved = (
                    f"stopped at step {out['stopped_at']}, newest checkpoint step "
                    f"{out['saved_at']}, exit {out['exit_seconds']:.1f} s after the signal"
                )
                if twice and not out["second_sent"]:
                    saved += " (the save ended before the second signal)"
                rerun = "identical" if out["rerun_identical"] else "DIFFERENT"
                rows.append((task, what, f"{saved}; rerun to the end: {rerun}"))
        if "corrupt" in checks:
            log(f"{task}: damaged checkpoint files")
            source = os.path.join(scratch, task, "same_a")
            counts, missed = faults.corruption(task, scratch, source)
            total = sum(counts.values())
            rows.append(
                (
                    task,
                    "each file of the newest checkpoint flipped (1 bit), truncated or deleted",
                    f"{total} cases: {counts['caught']} caught (previous "
                    f"step used), {counts['unread']} in bytes never read (same arrays), "
                    f"{counts['missed']} missed, {counts['crashed']} crashed",
                )
            )
            for line in missed:
                log(f"  missed: {line}")
        if "disk" in checks:
            log(f"{task}: disk full")
            out = faults.disk_full(task, scratch, limit_bytes=1_000_000)
            rows.append(
                (
                    task,
                    "file-size limit (1 MB) hit during a save",
                    (
                        f"exit {out['returncode']}, previous checkpoint "
                        f"{'intact' if out['previous_intact'] else 'DAMAGED'}, "
                        f"{'a traceback' if out['traceback'] else 'no traceback'}; last line: "
                        f"`{out['last_lines'][-1][:150] if out['last_lines'] else ''}`"
                    ),
                )
            )
    print("| task | fault | result |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    print(f"\nscratch: {scratch}", file=sys.stderr)


if __name__ == "__main__":
    main()
