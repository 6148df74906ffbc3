"""Every experiment config loads, is overridable from the command line, and rejects typos; the
recipe script passes each stage its arguments; the budget plot reads finished recipe runs."""

import glob
import json
import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from jaxbert import cli, plots
from jaxbert.model import SIZES

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py")))


def _parse(path, *overrides):
    argv = ["prog", f"--config={path}", *overrides]
    values = flags.FlagValues()
    # Override flags (--config.a.b=...) are defined from the argv the config flag is given.
    config_flags.DEFINE_config_file(
        "config", None, flag_values=values, lock_config=True, sys_argv=argv
    )
    values(argv)
    return values.config


def test_there_are_configs_for_every_stage():
    names = {os.path.basename(p) for p in CONFIGS}
    for stage in ("pretrain", "sbert_nli"):
        for size in ("tiny", "small", "base"):
            assert f"{stage}_{size}.py" in names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_loads_and_documents_itself(path):
    config = _parse(path)
    assert config.model.size in SIZES
    assert config.train.batch_size > 0
    with open(path) as f:
        docstring = f.read().split('"""')[1]
    assert "python scripts/" in docstring and "Expected" in docstring


def test_overrides_and_typos():
    path = [p for p in CONFIGS if p.endswith("pretrain_tiny.py")][0]
    config = _parse(path, "--config.optim.lr=5e-5", "--config.data.nsp=False")
    assert config.optim.lr == 5e-5 and config.data.nsp is False
    with pytest.raises(AttributeError, match="learning_rate"):
        _parse(path, "--config.optim.learning_rate=5e-5")
    # The entry points check first and name the field and its closest matches.
    problems = cli.unknown_overrides(["prog", "--config", path, "--config.optim.learning_rate=1"])
    assert len(problems) == 1
    assert "has no field 'optim.learning_rate'" in problems[0]
    assert "optim has: b1, b2, clip_norm, eps, freeze, grad_accum, lr," in problems[0]
    assert cli.unknown_overrides(["prog", f"--config={path}", "--config.optim.lr=1"]) == []
    (odd,) = cli.unknown_overrides(["prog", f"--config={path}", "--config.\n"])  # fuzz-found
    assert "\n" not in odd and odd.startswith("--config.\\n: ")
    (problem,) = cli.unknown_overrides(["prog", f"--config={path}", "--config.optm.lr=1"])
    assert "did you mean --config.optim.lr?" in problem
    assert "(the config has: data, " in problem and "optim, " in problem


@pytest.mark.parametrize("enabled", [True, False])
def test_setup_keeps_compiled_programs_in_the_persistent_cache(tmp_path, enabled):
    cache = tmp_path / "xla"
    code = (
        "from absl import flags; flags.FLAGS(['prog'])\n"
        "from jaxbert import cli; cli.setup()\n"
        "import jax, jax.numpy as jnp\n"
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
        "jax.jit(lambda x: jnp.tanh(x) @ x)(jnp.ones((64, 64))).block_until_ready()\n"
        "print(jax.config.jax_compilation_cache_dir)\n"
    )
    env = dict(os.environ, JAXBERT_COMPILATION_CACHE=str(cache) if enabled else "")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    if enabled:
        assert done.stdout.strip() == str(cache) and any(cache.iterdir())
    else:
        assert done.stdout.strip() == "None" and not cache.exists()


def test_bad_input_ends_an_entry_point_with_one_line_not_a_traceback(tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..")
    path = [p for p in CONFIGS if p.endswith("pretrain_tiny.py")][0]
    missing = tmp_path / "missing_*.jsonl"
    command = [sys.executable, os.path.join(root, "scripts", "pretrain.py"), f"--config={path}"]
    command += [f"--workdir={tmp_path / 'run'}", f"--config.data.train_files={missing}"]
    env = dict(os.environ, JAXBERT_COMPILATION_CACHE="")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"error: No files match {str(missing)!r}" in done.stderr
    assert "(FileNotFoundError at jaxbert/data/sources.py:" in done.stderr
    assert "JAXBERT_TRACEBACK=1 shows the traceback" in done.stderr


def test_exit_on_input_error_keeps_tracebacks_for_bugs(monkeypatch):
    monkeypatch.delenv("JAXBERT_TRACEBACK", raising=False)

    def bad_label():
        raise ValueError("unknown label 'maybe' in row 3")

    with pytest.raises(SystemExit) as info:
        cli.exit_on_input_error(bad_label)()
    message = str(info.value.code)
    assert message.startswith("error: unknown label 'maybe' in row 3\n(ValueError at ")
    assert "test_configs.py:" in message

    def bug():
        raise TypeError("unsupported operand")

    with pytest.raises(TypeError, match="unsupported operand"):
        cli.exit_on_input_error(bug)()
    monkeypatch.setenv("JAXBERT_TRACEBACK", "1")
    with pytest.raises(ValueError, match="unknown label"):
        cli.exit_on_input_error(bad_label)()


REPRODUCE = os.path.join(os.path.dirname(__file__), "..", "scripts", "reproduce.sh")


def test_reproduce_script_names_its_recipes():
    done = subprocess.run(["bash", REPRODUCE, "bogus", "/tmp/x"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown recipe 'bogus': scratch, distill or nli" in done.stderr
    done = subprocess.run(["bash", REPRODUCE], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr


def _recording_python(tmp_path):
    """A stand-in interpreter that records each command line (to the returned file), so the
    plumbing of scripts/reproduce.sh runs in no time. Asked where all-MiniLM-L6-v2 is installed
    (`-c ...`, the nli recipe's first question), it answers /minilm."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    answer = 'if [ "$1" = -c ]; then echo /minilm; exit; fi'
    fake.write_text(f'#!/usr/bin/env bash\n{answer}\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    return fake, calls


def _reproduce(tmp_path, recipe, **env):
    """Runs `reproduce.sh RECIPE WORKDIR --config.seed=1` with the recording interpreter and the
    extra environment variables env; returns WORKDIR, the recorded command lines (of this run
    only) and the training stages' arguments, split."""
    fake, calls = _recording_python(tmp_path)
    calls.unlink(missing_ok=True)
    work = tmp_path / "work"
    done = subprocess.run(
        ["bash", REPRODUCE, recipe, str(work), "--config.seed=1"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=str(fake), **env),
    )
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    return work, lines, [line.split() for line in lines if "--config " in line]


def test_reproduce_scratch_passes_the_pretraining_budget_to_pretraining_only(tmp_path):
    work, lines, args = _reproduce(tmp_path, "scratch", PRETRAIN_STEPS="300")
    stages = [" ".join(a) for a in args]
    assert [a[0] for a in args] == ["scripts/pretrain.py"] + 4 * ["scripts/finetune.py"]
    names = ("pretrain", "mnr", "sts", "head", "final")
    assert [a[a.index("--workdir") + 1] for a in args] == [str(work / name) for name in names]
    # Each fine-tuning stage starts from the one before it.
    for before, stage in zip(names, args[1:]):
        assert f"--config.init_from={work / before}" in stage
    configs = [a[a.index("--config") + 1].split("/")[-1] for a in args[1:]]
    assert configs == ["sbert_nli_mnr.py", "sbert_sts_cosent.py"] + 2 * ["sbert_nli_head.py"]
    # The head first sees a frozen encoder; the last stage trains both, CoSENT mixed in.
    assert [("--config.optim.freeze=" in a) for a in args[1:]] == [0, 0, 0, 1]
    assert [any(x.startswith("--config.data.train_scores=") for x in a) for a in args[1:]] == [
        0,
        0,
        0,
        1,
    ]
    assert "--config.train.num_steps=300" in stages[0].split()
    assert not any("num_steps" in line for line in stages[1:])
    assert all("--config.seed=1" in line.split() for line in stages)
    assert sum("scripts/evaluate.py" in line for line in lines) == 4
    assert "configs/pretrain_budget.py" in stages[0].split()
    # Without PRETRAIN_STEPS the config's own budget stands; PRETRAIN_CONFIG picks the config.
    _, lines, _ = _reproduce(tmp_path, "scratch", PRETRAIN_CONFIG="configs/pretrain_budget_gpu.py")
    text = "\n".join(lines)
    assert "num_steps" not in text and "configs/pretrain_budget_gpu.py" in lines[0]


def test_reproduce_nli_trains_a_head_then_head_and_encoder_with_cosent_mixed_in(tmp_path):
    work, lines, args = _reproduce(tmp_path, "nli")
    assert [a[a.index("--workdir") + 1] for a in args] == [str(work / n) for n in ("head", "final")]
    assert "--config.init_from=/minilm" in args[0]
    assert f"--config.init_from={work / 'head'}" in args[1]
    configs = [a[a.index("--config") + 1].split("/")[-1] for a in args]
    assert configs == ["sbert_nli_head.py", "sbert_nli_head.py"]
    # The head first sees a frozen encoder; the last stage trains both, CoSENT on STS-B mixed in.
    assert [("--config.optim.freeze=" in a) for a in args] == [0, 1]
    assert "--config.data.train_scores=stsb_train" in args[1]
    assert "--config.sbert.cosent_weight=0.3" in args[1]
    assert all("--config.seed=1" in a for a in args)
    evaluations = [line.split()[-1] for line in lines if "scripts/evaluate.py" in line]
    assert evaluations == ["stsb", "sick", "snli", "mnli"]


def test_reproduce_distill_ends_with_cosent_on_stsb_train_from_the_student(tmp_path):
    work, lines, stages = _reproduce(tmp_path, "distill")
    configs = [s[s.index("--config") + 1] for s in stages]
    assert configs == ["configs/distill_minilm.py", "configs/sbert_sts_cosent.py"]
    workdirs = [s[s.index("--workdir") + 1] for s in stages]
    assert workdirs == [str(work / name) for name in ("student", "final")]
    assert f"--config.init_from={work / 'student'}" in stages[1]
    assert "--config.data.train=stsb_train" in stages[1]
    assert "--config.train.batch_size=16" in stages[1]
    assert all("--config.seed=1" in s for s in stages)
    evaluations = [line for line in lines if "scripts/evaluate.py" in line]
    assert [line.split()[-1] for line in evaluations] == ["stsb", "sick"]
    assert all(f"--model {work / 'final'}" in line for line in evaluations)


SCRATCH_STAGES = ("pretrain", "mnr", "sts", "head", "nli", "sts2", "final")


def _scratch_workdir(root, steps, minutes, stsb, snli):
    def write(obj, *parts):
        path = root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))

    for before, stage, stage_minutes in zip(("",) + SCRATCH_STAGES, SCRATCH_STAGES, minutes):
        write({"steps": steps, "wall_seconds": 60.0 * stage_minutes}, stage, "summary.json")
        # As reproduce.sh leaves them: each stage starts from the one before, by its path then.
        init_from = f"elsewhere/{before}" if before else ""
        write({"init_from": init_from}, stage, "config.json")
    write(
        {"init_from": "", "train": {"batch_size": 64}, "data": {"max_len": 128}},
        "pretrain",
        "config.json",
    )
    write({"spearman": stsb}, "final", "eval", "stsb_stsb_dev.json")
    write({"accuracy": snli}, "final", "eval", "snli_snli_dev.json")
    return str(root)


def test_recipe_stages_follow_init_from_back_from_final(tmp_path):
    work = _scratch_workdir(tmp_path / "moved", 900, (1,) * 7, 77.9, 0.58)
    assert plots.recipe_stages(work) == [os.path.join(work, s) for s in SCRATCH_STAGES]
    # A run outside the WORKDIR is followed by its own path; hf: imports end the chain.
    outside = tmp_path / "probe"
    outside.mkdir()
    (outside / "config.json").write_text(json.dumps({"init_from": "hf:/some/model"}))
    final = os.path.join(work, "final", "config.json")
    with open(final, "w") as f:
        json.dump({"init_from": str(outside)}, f)
    assert plots.recipe_stages(work) == [str(outside), os.path.join(work, "final")]
    with open(final, "w") as f:
        json.dump({"init_from": str(tmp_path / "gone")}, f)
    with pytest.raises(FileNotFoundError, match="gone/config.json is missing"):
        plots.recipe_stages(work)


def test_budget_points_read_each_scratch_run_and_plot(tmp_path):
    big = _scratch_workdir(tmp_path / "s900", 900, (30, 5, 6, 2, 1, 1, 2), 77.9, 0.58)
    small = _scratch_workdir(tmp_path / "s100", 100, (3, 5, 6, 2, 1, 1, 2), 70.0, 0.52)
    points = plots.budget_points([big, small])
    assert [p["pretrain_steps"] for p in points] == [100, 900]  # sorted by tokens
    assert points[1]["tokens"] == 900 * 64 * 128
    assert [p["minutes"] for p in points] == [pytest.approx(20.0), pytest.approx(47.0)]
    assert (points[1]["stsb"], points[1]["snli"]) == (77.9, pytest.approx(58.0))
    out = plots.plot_budgets(
        points, str(tmp_path / "budgets.png"), {"stsb": [("target", 78.0)]}, before=points[:1]
    )
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    os.remove(tmp_path / "s100" / "final" / "eval" / "snli_snli_dev.json")
    with pytest.raises(FileNotFoundError, match="snli_snli_dev.json is missing"):
        plots.budget_points([small])
