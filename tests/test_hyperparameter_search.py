"""Tests for hyperparameter_search.py: the search space, ranking and the
Pareto front worked by hand, TPE's history on resume, and real tiny
searches: failed trials recorded, kill -9 then --resume, a trials.csv row
fed back to train.py, HParams event files, parallel trials on Spark."""

import contextlib
import csv
import fcntl
import functools
import glob
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

import hyperparameter_search as hs
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "hyperparameter_search.py")
# Small enough for a 2-epoch trial in a few seconds.
TINY_SPACE = {
    "batch_size": {"choice": [4, 8]}, "seq_len": {"choice": [8, 16]},
    "rnn_size": {"choice": [8, 16]}, "embedding_size": 8, "num_layers": 1,
    "drop_rate": {"uniform": [0, 0.2]},
    "optimizer": {"choice": ["rmsprop", "adam"]},
    "clip_norm": {"choice": [0, 5]}, "patience": 1,
}
# batch_size 100000 cannot fit the corpus. hyperopt's rand with seed 8
# draws 100000, 4, 4: a failed trial, then two that finish.
MIXED_SPACE = dict(TINY_SPACE, batch_size={"choice": [4, 100000]},
                   seq_len=8)
MIXED_SEED = 8
CSV_COLUMNS = [
    "rank", "trial_num", "val_loss", "train_loss", "num_epochs",
    "avg_epoch_seconds", "batch_size", "drop_rate", "embedding_size",
    "num_layers", "rnn_size", "seq_len", "optimizer", "clip_norm", "status",
    "pareto", "error", "train_flags"]

# ------------------------------------------------------------------ helpers --


def run_main(argv):
    """(exit code, stdout, stderr) of hs.main(argv)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = hs.main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
    return code, out.getvalue(), err.getvalue()


def write_space(folder, space, name="space.json"):
    path = folder / name
    path.write_text(space if isinstance(space, str) else json.dumps(space))
    return path


def search_argv(data_dir, exp_dir, space_path, *extra):
    return ["--data-dir", data_dir, "--experiment-dir", exp_dir,
            "--space", space_path, *extra]


def read_csv(exp_dir):
    with open(os.path.join(exp_dir, hs.CSV_FILE), newline="") as f:
        return list(csv.DictReader(f))


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def hparams_data(folder):
    """HParams plugin payloads and simple scalars in folder's event files:
    ([HParamsPluginData], {tag: value})."""
    from tensorboard.backend.event_processing.event_file_loader import (
        EventFileLoader)
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    payloads, scalars = [], {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == "hparams":
                    payloads.append(plugin_data_pb2.HParamsPluginData
                                    .FromString(plugin.content))
                elif plugin.plugin_name == "scalars":
                    scalars[value.tag] = float(
                        tensor_util.make_ndarray(value.tensor))
    return payloads, scalars


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """train.txt (~7 KB) and validate.txt (~2 KB) of short lines."""
    folder = tmp_path_factory.mktemp("data")
    line = "line {}: the quick brown fox jumps over the lazy dog.\n"
    (folder / "train.txt").write_text("".join(line.format(i)
                                              for i in range(120)))
    (folder / "validate.txt").write_text("".join(line.format(i)
                                                 for i in range(30)))
    return folder


# A trial process without TensorFlow: its "val_loss" is worked out from
# the settings, so a whole search takes about a second.
FAKE_TRIAL = """
import json, os, sys
spec = json.loads(sys.stdin.readline())
p = spec["record"]["params"]
loss = 1 + p["drop_rate"] + p["batch_size"] / 10 + p["rnn_size"] / 100
record = dict(spec["record"], status="ok", val_loss=loss, train_loss=loss,
              error=None, started=0.0, train_seconds=0.0, num_epochs=1,
              avg_epoch_seconds=float(p["seq_len"]))
with open(os.path.join(spec["checkpoint_dir"], "trial.json"), "w") as f:
    json.dump(record, f)
"""


def fake_trial_process(env=None, keep_fds=()):
    return subprocess.Popen([sys.executable, "-c", FAKE_TRIAL],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run_fake(argv):
    """run_main(argv) with fake trial processes."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(hs, "start_trial_process", fake_trial_process)
        return run_main(argv)


def trial_params(exp_dir):
    """{trial_num: params} of the finished trials in exp_dir."""
    return {r["trial_num"]: r["params"] for r in hs.read_records(exp_dir)}


def tree_bytes(folder):
    return {p: open(p, "rb").read()
            for p in glob.glob(f"{folder}/**", recursive=True)
            if os.path.isfile(p)}


@pytest.fixture(scope="module")
def fake_search(data_dir, tmp_path_factory):
    """A finished 3-trial search of fake trials, 1 epoch each:
    (argv, experiment dir, stderr)."""
    root = tmp_path_factory.mktemp("fake")
    argv = search_argv(data_dir, root / "exp", write_space(root, TINY_SPACE),
                       "--num-trials", 3, "--max-epochs-per-trial", 1,
                       "--algo", "rand", "--random-seed", 11)
    code, _, err = run_fake(argv)
    assert code == 0, err
    return [str(a) for a in argv], root / "exp", err


@pytest.fixture
def fake_copy(fake_search, tmp_path):
    """A copy of fake_search's folder to damage: (argv, experiment dir)."""
    argv, exp, _ = fake_search
    copy = tmp_path / "exp"
    shutil.copytree(exp, copy)
    i = argv.index("--experiment-dir")
    return argv[:i + 1] + [str(copy)] + argv[i + 2:], copy


@pytest.fixture(scope="module")
def mixed_search(data_dir, tmp_path_factory):
    """A real 3-trial search whose first trial fails:
    (argv, experiment dir, exit code, stdout, stderr)."""
    root = tmp_path_factory.mktemp("mixed")
    argv = search_argv(data_dir, root / "exp", write_space(root, MIXED_SPACE),
                       "--num-trials", 3, "--max-epochs-per-trial", 2,
                       "--algo", "rand", "--random-seed", MIXED_SEED)
    code, out, err = run_main(argv)
    return argv, root / "exp", code, out, err

# ------------------------------------------------------------- search space --


SPACE_ERRORS = [  # (file text, expected part of the error line)
    ('{"rnn_size": {"choice": []}}', "rnn_size: choice needs a non-empty"),
    ('{"dropout": 0.1}', "'dropout' is not a train.py setting"),
    ('{"drop_rate": {"uniform": [0.5, 0.1]}}', "needs low < high"),
    ('{"drop_rate": {"uniform": [0, 1.5]}}', "drop_rate: 1.5"),
    ('{"batch_size": {"choice": [0, 8]}}', "batch_size: 0"),
    ('{"optimizer": {"choice": ["adam", "nadam"]}}', "optimizer 'nadam'"),
    ('{"rnn_size": {"choice": ["big"]}}', "rnn_size 'big': must be a"),
    ('{"num_epochs": 3}', "set num_epochs with --max-epochs-per-trial"),
    ('{"learning_rate": {"loguniform": [0, 0.1]}}', "low > 0"),
    ('{"seq_len": {"gaussian": [1, 2]}}', "is not one of choice, uniform"),
    ('{"seq_len": {"quniform": [8, 64]}}', "quniform needs a list of 3"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"rnn_size": 8,', "cannot read it as JSON"),
    (json.dumps({k: 8 for k in ("batch_size", "embedding_size", "rnn_size",
                                "seq_len")} | {
        "num_layers": 1, "drop_rate": 0, "optimizer": "adam",
        "clip_norm": 0}), "nothing to search"),
]


# A bad --space file ends in one `error:` line naming the entry, exit 1,
# and no experiment folder is created.
@pytest.mark.parametrize("text, message", SPACE_ERRORS)
def test_bad_space_file(tmp_path, data_dir, text, message):
    argv = search_argv(data_dir, tmp_path / "exp",
                       write_space(tmp_path, text))
    code, out, err = run_main(argv)
    assert code == 1 and out == ""
    assert err.startswith("error: --space ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "exp").exists()


BAD_FLAGS = [  # (extra flags, exit code, expected part of the error)
    (["--data-dir", "nowhere"], 1, "training file .*nowhere.* not found"),
    (["--resume"], 1, "holds no search"),
    (["--gpus", "0", "--parallelism", "2"], 1, "needs a GPU of its own"),
    (["--num-trials", "0"], 2, "--num-trials: 0: must be a positive"),
    (["--algo", "grid"], 2, "--algo: invalid choice: 'grid'"),
]


# Bad flags end in one error line too, before anything is written.
@pytest.mark.parametrize("extra, exit_code, pattern", BAD_FLAGS)
def test_bad_flags(tmp_path, data_dir, extra, exit_code, pattern):
    argv = search_argv(data_dir, tmp_path / "exp",
                       write_space(tmp_path, TINY_SPACE), *extra)
    code, _, err = run_main(argv)
    assert code == exit_code and err.count("\n") == 1
    assert re.search("^error: .*" + pattern, err)
    assert not (tmp_path / "exp").exists()


FLAG_VALUE_ERRORS = [  # (extra flags, the whole error line)
    (["--random-seed", "-1"], "argument --random-seed: -1 is not an integer "
     "from 0 to 4294967295"),
    (["--random-seed", "4294967296"], "argument --random-seed: 4294967296 "
     "is not an integer from 0 to 4294967295"),
    (["--random-seed", "1.5"], "argument --random-seed: '1.5' is not an "
     "integer from 0 to 4294967295"),
    (["--gpus", "abc"], "argument --gpus: 'abc' is not a comma-separated "
     "list of GPU ids such as 0,1,2,3"),
    (["--gpus", ",,"], "argument --gpus: ',,' is not a comma-separated "
     "list of GPU ids such as 0,1,2,3"),
    (["--gpus", "0,-1"], "argument --gpus: '0,-1' is not a comma-separated "
     "list of GPU ids such as 0,1,2,3"),
    (["--gpus", "0,1,00"], "argument --gpus: '0,1,00' names GPU 0 more than "
     "once: list each GPU once"),
    (["--spark-master", "notaurl"], "argument --spark-master: 'notaurl' is "
     "not a Spark master URL: use local, local[N], spark://HOST:PORT, yarn "
     "or k8s://https://HOST:PORT"),
    (["--spark-master", "spark://host"], "argument --spark-master: "
     "'spark://host' is not a Spark master URL: use local, local[N], "
     "spark://HOST:PORT, yarn or k8s://https://HOST:PORT"),
    (["--experiment-dir", ""], "argument --experiment-dir: '' is not a "
     "path: give a file or folder name (an empty one would mean the current "
     "folder)"),
    (["--data-dir", ""], "argument --data-dir: '' is not a path: give a "
     "file or folder name (an empty one would mean the current folder)"),
]


# Every flag's value is checked by argparse: exit 2, one line naming the
# flag and the value, and no experiment folder.
@pytest.mark.parametrize("extra, line", FLAG_VALUE_ERRORS)
def test_flag_values_checked_first(tmp_path, data_dir, extra, line):
    argv = search_argv(data_dir, tmp_path / "exp",
                       write_space(tmp_path, TINY_SPACE), *extra)
    code, out, err = run_main(argv)
    assert (code, out, err) == (2, "", f"error: {line}\n")
    assert not (tmp_path / "exp").exists()


# search() called with a plain dict checks the same values before it
# writes anything, naming the flag.
@pytest.mark.parametrize("name, value, message", [
    ("random_seed", -1, "--random-seed -1 is not an integer from 0 to "
     "4294967295"),
    ("gpus", "1,1", "--gpus '1,1' names GPU 1 more than once: list each "
     "GPU once"),
    ("experiment_dir", "", "--experiment-dir '' is not a path: give a file "
     "or folder name (an empty one would mean the current folder)"),
    ("num_trials", 0, "--num-trials 0 is not a positive integer"),
])
def test_search_checks_values(tmp_path, data_dir, name, value, message):
    settings = {"data_dir": str(data_dir), "command_line": ["x"],
                "experiment_dir": str(tmp_path / "exp"), name: value}
    with pytest.raises(ValueError) as e:
        hs.search(settings)
    assert str(e.value) == message
    assert not (tmp_path / "exp").exists()


# Good values pass, in the form the search uses.
@pytest.mark.parametrize("flag, text, value", [
    ("--random-seed", "0", 0), ("--random-seed", "4294967295", 4294967295),
    ("--gpus", "0", ["0"]), ("--gpus", "3,1,07", ["3", "1", "7"]),
    ("--spark-master", "local", "local"),
    ("--spark-master", "local[4]", "local[4]"),
    ("--spark-master", "local[*,2]", "local[*,2]"),
    ("--spark-master", "yarn", "yarn"),
    ("--spark-master", "spark://a:7077,b:7077", "spark://a:7077,b:7077"),
    ("--spark-master", "k8s://https://host:443", "k8s://https://host:443"),
])
def test_good_flag_values(flag, text, value):
    args = hs.create_parser().parse_args([flag, text])
    assert getattr(args, flag[2:].replace("-", "_")) == value


SAMPLES = [  # (label, entry, hyperopt's sample, value trained, hyperopt's)
    ("rnn_size", {"quniform": [8, 64, 8]}, 24.0, 24, 24.0),
    ("drop_rate", {"uniform": [0, 0.5]}, 0.123456789, 0.1235, 0.123456789),
    ("clip_norm", {"choice": [0, 5]}, 5, 5.0, 1),
    ("optimizer", {"choice": ["adam", "sgd"]}, "sgd", "sgd", 1),
    ("learning_rate", {"loguniform": [1e-4, 1e-2]}, 0.000316227766,
     0.0003162, 0.000316227766),
    ("batch_size", {"uniform": [4, 20]}, 7.6, 8, 7.6),
]


# A sample becomes the value train() takes (real choice values, integers
# rounded, 4 significant digits), while hyperopt's own record keeps the
# choice index and the raw number for TPE.
@pytest.mark.parametrize("label, entry, sampled, value, raw", SAMPLES)
def test_sample_to_settings(label, entry, sampled, value, raw):
    space = {label: entry, "num_layers": 2}
    params = hs.trial_settings(space, {label: sampled})
    assert params == {label: value, "num_layers": 2}
    assert type(params[label]) is type(value)
    assert hs.hyperopt_vals(space, {label: sampled}) == {label: [raw]}


# The built-in space is the tutorial's, labelled with train.py's settings.
def test_builtin_space_uses_train_names():
    space = hs.load_space()
    assert set(space) == {"batch_size", "drop_rate", "embedding_size",
                          "num_layers", "rnn_size", "seq_len", "optimizer",
                          "clip_norm"}
    assert set(space) <= set(train.DEFAULTS)
    assert space["optimizer"]["choice"] == ["rmsprop", "adagrad",
                                            "adadelta", "adam"]

# ------------------------------------------------------- ranking and Pareto --


def record(num, val_loss=None, seconds=None):
    if val_loss is None:
        return {"trial_num": num, "status": "failed", "error": "boom",
                "params": {}}
    return {"trial_num": num, "status": "ok", "val_loss": val_loss,
            "train_loss": val_loss, "num_epochs": 2,
            "avg_epoch_seconds": seconds, "params": {}}


RANKING_CASES = [  # ((trial, val_loss, s/epoch) rows, order, Pareto front)
    ([(1, 2.0, 10), (2, 1.5, 20), (3, 1.5, 30), (4, 1.0, 40), (5, 1.2, 50),
      (6, None, None), (7, 2.5, 5)], [4, 5, 2, 3, 1, 7, 6], {1, 2, 4, 7}),
    ([(1, 1.0, 10), (2, 1.0, 10), (3, 1.1, 10)], [1, 2, 3], {1, 2}),
    ([(1, 1.0, 10), (2, 1.0, 12), (3, 0.9, 12)], [3, 1, 2], {1, 3}),
    ([(1, 3.0, 1)], [1], {1}),
    ([(2, None, None), (1, None, None)], [1, 2], set()),
]


# Worked by hand. Case 1: by val_loss 4 (1.0), 5, 2 (1.5), 3 (1.5, tie
# broken by trial number), 1, 7, and failed 6 last without a rank. Front:
# 7 is the fastest; 1 is slower but better than 7; 2 is better than 1; 3
# equals 2's val_loss but is slower, so 2 beats it; 4 has the best
# val_loss; 5 is slower and worse than 4. Case 2: exact twins, neither
# beats the other. Case 3: 2 ties 1 on val_loss and is slower, and ties 3
# on speed with a worse val_loss.
@pytest.mark.parametrize("rows, order, front", RANKING_CASES)
def test_ranking_and_pareto_front(rows, order, front):
    records = [record(*row) for row in rows]
    assert [r["trial_num"] for r in hs.rank_records(records)] == order
    assert hs.pareto_front(records) == front
    csv_rows = list(hs.csv_rows(records, []))
    ok = [r for r in csv_rows if r["status"] == "ok"]
    assert [r["rank"] for r in ok] == list(range(1, len(ok) + 1))
    assert all(r["rank"] == r["pareto"] == "" and r["error"] == "boom"
               for r in csv_rows if r["status"] == "failed")
    assert {r["trial_num"] for r in ok if r["pareto"] == "yes"} == front


FLAG_CASES = [
    {"batch_size": 64, "drop_rate": 0.1235, "optimizer": "adam",
     "clip_norm": 0.0, "num_epochs": 10, "random_seed": 7},
    {"learning_rate": 0.0003162, "vocab": "corpus", "num_layers": 2,
     "rnn_size": 128, "max_bytes_in_ram": 1048576},
    {"learning_rate": None, "min_delta": 0.01, "patience": 1},
]


# A trials.csv row's train_flags, parsed by train.py, give back the trial's
# settings (a None setting stays unset, i.e. the optimizer's default).
@pytest.mark.parametrize("params", FLAG_CASES)
def test_train_flags_parse_back(params):
    argv = shlex.split(hs.train_flags(params)) + ["--checkpoint-dir", "x"]
    args = train.create_parser().parse_args(argv)
    assert {k: getattr(args, k) for k in params} == params

# --num-epochs and --random-seed lead the cell, so a user's --num-epochs
# after the pasted cell wins; the rest of the trial is kept.
def test_num_epochs_after_the_cell_wins():
    params = {"batch_size": 64, "num_epochs": 1, "random_seed": 4,
              "optimizer": "adam"}
    cell = hs.train_flags(params)
    assert cell == ("--num-epochs 1 --random-seed 4 --batch-size 64 "
                    "--optimizer adam")
    argv = shlex.split(cell) + ["--num-epochs", "20", "--checkpoint-dir",
                                "x"]
    args = train.create_parser().parse_args(argv)
    assert (args.num_epochs, args.random_seed, args.batch_size,
            args.optimizer) == (20, 4, 64, "adam")


# Counts agree with their nouns.
@pytest.mark.parametrize("n, noun, text", [
    (0, "trial", "0 trials"), (1, "epoch", "1 epoch"),
    (2, "epoch", "2 epochs"), (1, "trial", "1 trial"),
])
def test_plural(n, noun, text):
    assert hs.plural(n, noun) == text


# ------------------------------------------------------------ TPE on resume --


# A search rebuilt from its trial records goes on exactly as if it had
# never stopped: TPE sees the same history, failed trials included, and
# fmin the same random stream.
def test_resumed_history_continues_tpe():
    import hyperopt

    space = {"x": {"uniform": [-2, 2]}, "k": {"choice": [1, 2, 3]},
             "opt": {"choice": ["a", "b"]}}
    algo = functools.partial(hyperopt.tpe.suggest, n_startup_jobs=3)

    def run(records, max_evals):
        records = list(records)

        def objective(sampled):
            failed = sampled["k"] == 3
            loss = (sampled["x"] - 0.5) ** 2 + sampled["k"]
            records.append({
                "trial_num": len(records) + 1, "sampled": sampled,
                "status": "failed" if failed else "ok", "val_loss": loss,
                "hyperopt_vals": hs.hyperopt_vals(space, sampled)})
            return {"status": "fail"} if failed else {"status": "ok",
                                                      "loss": loss}

        hs.fmin(fn=objective, space=hs.hyperopt_space(space), algo=algo,
                max_evals=max_evals, show_progressbar=False,
                trials=hs.history_trials(hyperopt.Trials(), records),
                rstate=hs.search_rng(5, len(records)), return_argmin=False)
        return records

    whole = run([], 10)
    assert any(r["status"] == "failed" for r in whole[:6])
    resumed = run(run([], 6), 10)
    assert [r["sampled"] for r in resumed] == [r["sampled"] for r in whole]

# ----------------------------------------------------------- real searches --


# A trial that fails is recorded with its reason and the search goes on to
# its total; trials.csv ranks the finished ones with the tutorial's
# columns, real values, and a Pareto column; stdout is the CSV's path.
def test_failed_trial_recorded_and_search_goes_on(mixed_search):
    _, exp, code, out, err = mixed_search
    assert code == 0, err
    assert out == f"{exp / hs.CSV_FILE}\n"
    rows = read_csv(exp)
    assert list(rows[0]) == CSV_COLUMNS
    by_num = {int(r["trial_num"]): r for r in rows}
    assert [by_num[n]["status"] for n in (1, 2, 3)] == ["failed", "ok", "ok"]
    assert "--batch-size 100000 x --seq-len 8" in by_num[1]["error"]
    assert [r["rank"] for r in rows] == ["1", "2", ""]
    assert rows[0]["pareto"] == "yes"
    assert float(rows[0]["val_loss"]) <= float(rows[1]["val_loss"])
    assert "trial 1 failed: training" in err
    with open(exp / hs.PLOT_FILE, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# Each CSV row holds the values the trial trained with (its settings.json),
# never hyperopt's choice indices.
def test_csv_holds_the_trained_values(mixed_search):
    _, exp, _, _, _ = mixed_search
    for row in read_csv(exp):
        if row["status"] != "ok":
            continue
        settings = read_json(exp / row["trial_num"] / train.SETTINGS_FILE)
        for label in hs.SEARCH_SPACE:
            assert row[label] == str(settings[label])
        assert row["optimizer"] in ("rmsprop", "adam")
        assert row["clip_norm"] in ("0.0", "5.0")
        assert 0 <= float(row["drop_rate"]) <= 0.2


# The best row's train_flags fed back to train.py train the same
# configuration: every setting in settings.json matches the trial's.
def test_csv_row_reproduces_the_trial_in_train_py(mixed_search, data_dir,
                                                  tmp_path):
    _, exp, _, _, _ = mixed_search
    row = read_csv(exp)[0]
    again = tmp_path / "again"
    code = train.main(shlex.split(row["train_flags"]) + [
        "--data-dir", str(data_dir), "--checkpoint-dir", str(again),
        "--quiet"])
    assert code == 0
    trial = read_json(exp / row["trial_num"] / train.SETTINGS_FILE)
    rerun = read_json(again / train.SETTINGS_FILE)
    names = [n for n in train.DEFAULTS if n != "data_dir"]
    assert {n: rerun[n] for n in names} == {n: trial[n] for n in names}


# TensorBoard's HParams tab has what it needs: the experiment config at the
# log root and, per trial, its hyperparameter values and results.
def test_hparams_event_files(mixed_search):
    _, exp, _, _, _ = mixed_search
    (config,), _ = hparams_data(exp)
    names = {h.name for h in config.experiment.hparam_infos}
    assert names == {"batch_size", "rnn_size", "drop_rate", "optimizer",
                     "clip_norm", "status"}
    metrics = {m.name.tag for m in config.experiment.metric_infos}
    assert {"val_loss", "avg_epoch_seconds", "epoch_loss"} <= metrics
    for row in read_csv(exp):
        (session,), scalars = hparams_data(exp / row["trial_num"])
        values = session.session_start_info.hparams
        assert values["optimizer"].string_value == row["optimizer"]
        assert values["batch_size"].number_value == int(row["batch_size"])
        assert values["status"].string_value == row["status"]
        if row["status"] == "ok":
            assert scalars["val_loss"] == pytest.approx(
                float(row["val_loss"]), abs=1e-4)


# Without --resume an existing search is refused and left byte for byte as
# it was; --resume with a contradicting setting is refused too.
@pytest.mark.parametrize("extra, message", [
    ([], "already holds files: pass --resume"),
    (["--resume", "--max-epochs-per-trial", "5"],
     "--max-epochs-per-trial 5 contradicts the saved search's 2"),
    (["--resume", "--algo", "tpe"], '--algo "tpe" contradicts'),
])
def test_existing_search_is_refused(mixed_search, extra, message):
    argv, exp, _, _, _ = mixed_search
    before = {p: open(p, "rb").read() for p in glob.glob(f"{exp}/**",
                                                         recursive=True)
              if os.path.isfile(p)}
    code, _, err = run_main(argv + extra)
    assert code == 1 and message in err and err.count("\n") == 1
    after = {p: open(p, "rb").read() for p in glob.glob(f"{exp}/**",
                                                        recursive=True)
             if os.path.isfile(p)}
    assert after == before


# A folder whose lock another search holds is not searched alongside it.
def test_running_search_is_not_joined(mixed_search, monkeypatch):
    argv, exp, _, _, _ = mixed_search
    monkeypatch.setattr(hs, "LOCK_WAIT_SECONDS", 0.3)
    fd = os.open(exp / hs.LOCK_FILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        code, _, err = run_main(argv + ["--resume"])
    finally:
        os.close(fd)
    assert code == 1 and "another search is running" in err


# kill -9 during trial 2, then the same command with --resume: trial 1 is
# kept untouched, trial 2 restarts from an empty folder with the same
# sampled settings, a temp file the kill left is removed, and the search
# reaches its total.
def test_kill_then_resume(data_dir, tmp_path):
    exp = tmp_path / "exp"
    argv = [str(a) for a in search_argv(
        data_dir, exp, write_space(tmp_path, TINY_SPACE), "--num-trials", 3,
        "--max-epochs-per-trial", 2, "--random-seed", 1)]
    with open(tmp_path / "stderr.txt", "w") as log:
        proc = subprocess.Popen([sys.executable, SCRIPT, *argv],
                                stdout=subprocess.DEVNULL, stderr=log)
    settings_2 = exp / "2" / train.SETTINGS_FILE
    deadline = time.monotonic() + 300
    while not settings_2.exists() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    interrupted = read_json(settings_2)
    trial_1 = (exp / "1" / hs.TRIAL_FILE).read_bytes()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (exp / ".tmp-trials.csv").write_text("rank,tri")
    code, _, err = run_main(argv + ["--resume"])
    assert code == 0, err
    assert "discarded unfinished trial(s) 2" in err
    assert (exp / "1" / hs.TRIAL_FILE).read_bytes() == trial_1
    assert read_json(settings_2) == interrupted
    assert sorted(int(r["trial_num"]) for r in read_csv(exp)) == [1, 2, 3]
    assert not glob.glob(str(exp / ".tmp-*"))
    assert len(read_json(exp / hs.SEARCH_FILE)["command_lines"]) == 2


def dying_trial_process(env=None, keep_fds=()):
    """A trial process that the system kills, as the OOM killer would."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    return subprocess.Popen([sys.executable, "-c", code],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


ALL_FAILED = [  # (space entries, trial process, reason in every row)
    ({"batch_size": 100000}, None, "--batch-size 100000 x --seq-len"),
    ({"optimizer": "sgd", "learning_rate": 1e30, "clip_norm": 0}, None,
     "loss became"),
    ({}, dying_trial_process, "trial process killed by SIGKILL (the system "
     "may have run out of memory)"),
]


# When every trial fails (bad size, diverging loss, process killed) the
# search still runs them all, then ends with one summary line and exit 1,
# and trials.csv gives each trial's reason; no loss is invented.
@pytest.mark.parametrize("entries, process, reason", ALL_FAILED)
def test_all_trials_failed(data_dir, tmp_path, monkeypatch, entries,
                           process, reason):
    if process is not None:
        monkeypatch.setattr(hs, "start_trial_process", process)
    space = dict(TINY_SPACE, **entries)
    exp = tmp_path / "exp"
    code, out, err = run_main(search_argv(
        data_dir, exp, write_space(tmp_path, space), "--num-trials", 2,
        "--max-epochs-per-trial", 1))
    assert code == 1 and out == ""
    assert err.splitlines()[-1].startswith("error: all 2 trials failed")
    assert err.count("error:") == 1
    rows = read_csv(exp)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(reason in r["error"] and r["val_loss"] == r["rank"] == ""
               for r in rows)


# --parallelism 2 runs the trials on a local Spark; both are recorded in
# the shared folder and trials.csv exactly as a serial search records them.
@pytest.mark.skipif(not (shutil.which("java") or os.environ.get("JAVA_HOME")),
                    reason="a local Spark needs Java, which is not installed")
def test_parallel_trials_on_local_spark(data_dir, tmp_path):
    exp = tmp_path / "exp"
    code, _, err = run_main(search_argv(
        data_dir, exp, write_space(tmp_path, TINY_SPACE), "--num-trials", 2,
        "--max-epochs-per-trial", 1, "--parallelism", 2, "--random-seed", 1))
    assert code == 0, err
    rows = read_csv(exp)
    assert sorted(int(r["trial_num"]) for r in rows) == [1, 2]
    assert all(r["status"] == "ok" for r in rows)
    for row in rows:
        record = read_json(exp / row["trial_num"] / hs.TRIAL_FILE)
        assert record["status"] == "ok"
        assert glob.glob(str(exp / row["trial_num"] / "model-epoch*.keras"))


# --------------------------------------------------- damaged or odd state --


# The start line speaks of 1 epoch, not "1 epochs".
def test_start_line_wording(fake_search):
    _, exp, err = fake_search
    assert "search: 0 of 3 trials done, at most 1 epoch each, rand, " in err
    assert "1 epoch, " in err and "epoch(s)" not in err


def _write(path, text):
    path.write_text(text)


DAMAGED = [  # (change to the copy, extra flags, expected error after exp)
    (lambda e: _write(e / hs.SEARCH_FILE, "{"), [],
     "/search.json is damaged (Expecting property name enclosed in double "
     "quotes: line 1 column 2 (char 1)): restore it from a copy, or start a "
     "new search in another --experiment-dir (each trial folder stays a "
     "train.py run)"),
    (lambda e: _write(e / hs.SEARCH_FILE, json.dumps(dict(
        read_json(e / hs.SEARCH_FILE), random_seed=-1))), [],
     "/search.json is damaged (random_seed -1 is not an integer from 0 to "
     "4294967295): restore it"),
    (lambda e: _write(e / hs.SEARCH_FILE, "[]"), [],
     "/search.json is damaged (not a JSON object): restore it"),
    (lambda e: _write(e / "2" / hs.TRIAL_FILE, "{"), [],
     "/2/trial.json is damaged (Expecting property name enclosed in double "
     "quotes: line 1 column 2 (char 1)): delete the folder {exp}/2 and run "
     "the search with --resume to train trial 2 again"),
    (lambda e: _write(e / "3" / hs.TRIAL_FILE, '{"status": "ok"}'), [],
     "/3/trial.json is damaged (trial_num missing or of the wrong type): "
     "delete the folder {exp}/3 and run"),
    (lambda e: None, ["--num-trials", "2"],
     " the search asks for 2 trials but 3 are already done in {exp}: pass "
     "--num-trials 3 or more"),
]


# A damaged search.json or trial.json, or fewer trials asked for than are
# done, ends --resume with one error line naming the file and what to do,
# and nothing in the folder changes: search.json is not rewritten, the
# unfinished trial 9 is not discarded.
@pytest.mark.parametrize("damage, extra, message", DAMAGED)
def test_damaged_state_is_refused(fake_copy, damage, extra, message):
    argv, exp = fake_copy
    damage(exp)
    (exp / "9").mkdir()
    before = tree_bytes(exp)
    code, out, err = run_fake(argv + ["--resume", *extra])
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith("error: --resume:" if "search.json" in message
                          or "asks for" in message else "error: trial "
                          f"record {exp}/")
    assert message.format(exp=exp) in err
    assert tree_bytes(exp) == before and (exp / "9").is_dir()


# A finished trial whose trial.json was deleted runs again with the
# settings it had (what a serial search suggested for that number), never
# the next trial's, whichever trials are missing and with either algo.
@pytest.mark.parametrize("algo", ["rand", "tpe"])
@pytest.mark.parametrize("missing", [[2], [1, 3], [4]])
def test_missing_trial_reruns_its_own_settings(data_dir, tmp_path, algo,
                                               missing):
    exp = tmp_path / "exp"
    argv = search_argv(data_dir, exp, write_space(tmp_path, TINY_SPACE),
                       "--num-trials", 4, "--max-epochs-per-trial", 1,
                       "--algo", algo, "--random-seed", 3)
    assert run_fake(argv)[0] == 0
    first = trial_params(exp)
    assert len({json.dumps(p, sort_keys=True) for p in first.values()}) == 4
    for num in missing:
        (exp / str(num) / hs.TRIAL_FILE).unlink()
    code, _, err = run_fake(argv + ["--resume"])
    assert code == 0, err
    assert trial_params(exp) == first


# An experiment dir that cannot be written ends in one error line naming
# it, without a traceback, and nothing is created.
def test_unwritable_experiment_dir(tmp_path, data_dir):
    (tmp_path / "file").write_text("x")
    exp = tmp_path / "file" / "exp"
    code, out, err = run_main(search_argv(
        data_dir, exp, write_space(tmp_path, TINY_SPACE)))
    assert (code, out) == (1, "")
    assert err == (f"error: cannot write the experiment dir {exp} (Not a "
                   f"directory: {exp}): make it writable (chmod u+w; chattr "
                   "-i if it is immutable) or choose another "
                   "--experiment-dir\n")


# The same for an immutable folder (chattr +i, which binds root too).
def test_immutable_experiment_dir(tmp_path, data_dir):
    exp = tmp_path / "exp"
    exp.mkdir()
    if subprocess.run(["chattr", "+i", exp], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        code, out, err = run_main(search_argv(
            data_dir, exp, write_space(tmp_path, TINY_SPACE)))
        assert os.listdir(exp) == []
    finally:
        subprocess.run(["chattr", "-i", exp])
    assert (code, out) == (1, "")
    assert err == (f"error: cannot write the experiment dir {exp} "
                   f"(Operation not permitted: {exp}/.lock): make it "
                   "writable (chmod u+w; chattr -i if it is immutable) or "
                   "choose another --experiment-dir\n")
