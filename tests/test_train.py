"""Tests for train.py: bad input through the CLI, one real end-to-end run
on the bundled corpus, restore, and the state resets around validation."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import prepare_data
import train
import utils

TINY = ["--rnn-size", "32", "--embedding-size", "8", "--batch-size", "8",
        "--seq-len", "16", "--random-seed", "1"]


def corpus_vocab(text):
    counts = {ord(c): text.count(c) for c in set(text)}
    return utils.build_vocabulary("corpus", counts)


def run_main(argv, capsys):
    """(exit code, stderr) of train.main(argv)."""
    try:
        code = train.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small slice of the real bundled corpus: ~40k training characters."""
    root = tmp_path_factory.mktemp("corpus")
    prepare_data.prepare(out_dir=str(root), name="fortunes")
    split = root / "fortunes-split"
    small = root / "small"
    small.mkdir()
    for name, size in (("train.txt", 40000), ("validate.txt", 8000)):
        text = (split / name).read_text("utf-8")
        (small / name).write_text(text[:size], "utf-8")
    return small


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    """One real two-epoch run of a tiny model, through the CLI."""
    folder = tmp_path_factory.mktemp("runs") / "run"
    code = train.main(["--data-dir", str(corpus), "--checkpoint-dir",
                       str(folder), "--num-epochs", "2", "--quiet"] + TINY)
    assert code == 0
    return folder


def scalars(log_dir, tag="epoch_loss"):
    """{step: value} of a scalar in the TensorBoard event files of log_dir."""
    import tensorflow as tf

    values = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.tag == tag:
                    values[event.step] = float(tf.make_ndarray(v.tensor))
    return values


# ----------------------------------------------------------------- bad input --

def bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.txt").write_text("")
    (empty / "validate.txt").write_text("some text\n" * 100)
    empty_val = tmp_path / "empty_val"
    empty_val.mkdir()
    (empty_val / "train.txt").write_text("some text\n" * 100)
    (empty_val / "validate.txt").write_text("")
    short = tmp_path / "short"
    short.mkdir()
    (short / "train.txt").write_text("x" * 50)
    (short / "validate.txt").write_text("x" * 5000)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.txt").write_bytes(b"caf\xc3\xa9 ok " * 10 + b"\xff tail")
    (bad / "validate.txt").write_text("x" * 5000)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "settings.json").write_text("not json")
    (junk / "model-epoch001-val1.0000.keras").write_text("not a model")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    settings = dict(train.DEFAULTS, rnn_size=32, embedding_size=8,
                    batch_size=8, seq_len=16)
    (damaged / "settings.json").write_text(json.dumps(settings))
    (damaged / "history.json").write_text(json.dumps(
        {"epochs": [], "best_val_loss": None, "best_epoch": None}))
    utils.save_vocabulary(str(damaged), utils.build_vocabulary("fixed"))
    (damaged / "model-epoch001-val1.0000.keras").write_bytes(b"PK\x03\x04")
    ok = tmp_path / "ok"
    ok.mkdir()
    for name in ("train.txt", "validate.txt"):
        (ok / name).write_text("some text\n" * 100)
    folder = tmp_path / "folder"
    (folder / "train.txt").mkdir(parents=True)
    return {"folder": folder, "nowhere": tmp_path / "nowhere",
            "ok": ok, "damaged": damaged, "missing": tmp_path / "nowhere",
            "empty": empty,
            "empty_val": empty_val, "short": short, "bad": bad,
            "other": other, "junk": junk}


BAD_CASES = [  # (data dir, checkpoint dir, extra flags, expected message)
    ("missing", None, [], "training file .* not found: point --data-dir"),
    ("empty", None, [], "training file .* is empty"),
    ("empty_val", None, [], "validation file .* is empty"),
    ("short", None, [], "has 50 characters; --batch-size 8 x --seq-len 16 "
     "needs at least 129: lower --batch-size or --seq-len"),
    ("bad", None, [], r"invalid UTF-8 at byte 90; re-encode"),
    ("short", "other", [], "already holds other files: pass --restore"),
    ("short", None, ["--restore"], "--restore: .* holds no run"),
    ("short", "other", ["--restore"], "--restore: .* holds no run"),
    ("short", "junk", ["--restore"], "cannot read .*settings.json"),
    ("ok", "nowhere", ["--checkpoint-dir", "/proc/charlstm-test"],
     "cannot write into /proc .*: choose a writable --checkpoint-dir"),
    ("folder", None, [], "training file .*train.txt is a folder"),
    ("ok", "damaged", ["--restore"],
     "cannot load checkpoint .*model-epoch001-val1.0000.keras"),
]


# Each bad input ends in one `error:` line, exit 1, no traceback, and the
# checkpoint folder is left exactly as it was.
@pytest.mark.parametrize("data, ckpt, extra, message", BAD_CASES)
def test_bad_input(tmp_path, capsys, data, ckpt, extra, message):
    dirs = bad_inputs(tmp_path)
    folder = dirs[ckpt] if ckpt else tmp_path / "ckpt"
    before = sorted(os.listdir(folder)) if folder.exists() else None
    code, err = run_main(["--data-dir", dirs[data], "--checkpoint-dir",
                          folder] + TINY + extra, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]
    after = sorted(os.listdir(folder)) if folder.exists() else None
    assert after == before


# Bad values are refused by argparse (exit 2) before anything else runs.
@pytest.mark.parametrize("flag, value", [
    ("--rnn-size", "0"), ("--batch-size", "-4"), ("--seq-len", "abc"),
    ("--drop-rate", "1.0"), ("--drop-rate", "-0.1"), ("--num-layers", "0"),
    ("--learning-rate", "0"), ("--clip-norm", "-1"), ("--optimizer", "lbfgs"),
    ("--clip-norm", "nan"), ("--random-seed", "-1"),
    ("--random-seed", str(2**32)), ("--max-vocab-size", "1")])
def test_bad_values(tmp_path, capsys, flag, value):
    code, err = run_main(["--checkpoint-dir", tmp_path / "c", flag, value],
                         capsys)
    assert code == 2
    assert err.startswith(f"error: argument {flag}") and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


# train() called directly (as the search does) raises ValueError quoting
# the value.
def test_train_checks_params(tmp_path, corpus):
    with pytest.raises(ValueError, match=r"drop_rate: 1.5: must be in \[0, 1\)"):
        train.train({"checkpoint_dir": str(tmp_path / "c"), "drop_rate": 1.5},
                    str(corpus / "train.txt"), str(corpus / "validate.txt"))


# A bad file is reported before TensorFlow is imported.
def test_errors_come_before_tensorflow(tmp_path):
    code = ("import sys, train\n"
            "try:\n"
            "    train.main(['--data-dir', sys.argv[1], '--checkpoint-dir',"
            " sys.argv[2]])\n"
            "except SystemExit as e:\n"
            "    print(e.code, 'tensorflow' in sys.modules)\n")
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "none"),
         str(tmp_path / "c")], capture_output=True, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip().endswith("False")
    assert out.stdout.startswith("error: training file")


# ---------------------------------------------------------------- end to end --

# The run writes its settings, vocabulary, history and one loadable best
# checkpoint, and the TensorBoard files hold loss and val_loss per epoch that
# equal the history.
def test_end_to_end_run(run):
    settings = json.loads((run / "settings.json").read_text())
    assert settings["rnn_size"] == 32 and settings["random_seed"] == 1
    assert "--checkpoint-dir" in settings["command_line"]
    history = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    best = min(history["epochs"], key=lambda e: e["val_loss"])
    assert history["best_val_loss"] == best["val_loss"]
    path, epoch, val_loss = utils.find_checkpoint(str(run))
    assert epoch == best["epoch"]
    assert val_loss == pytest.approx(best["val_loss"], abs=5e-5)
    assert len(glob.glob(str(run / "*.keras"))) == 1
    train_loss = scalars(str(run / "logs" / "train"))
    val = scalars(str(run / "logs" / "validation"))
    assert sorted(train_loss) == sorted(val) == [0, 1]
    for e in history["epochs"]:
        assert train_loss[e["epoch"] - 1] == pytest.approx(e["loss"])
        assert val[e["epoch"] - 1] == pytest.approx(e["val_loss"])
    # A tiny model on real text learns something within two epochs.
    assert history["epochs"][1]["loss"] < np.log(98) - 1


# A saved and reloaded model predicts the same, and evaluating it twice
# gives the same val_loss because the states are reset before validation.
def test_reload_and_repeatable_validation(run, corpus):
    import model

    _, best_epoch, _ = utils.find_checkpoint(str(run))
    net = model.load_checkpoint(utils.find_checkpoint(str(run))[0])
    # The checkpoint carries the optimizer state: 312 steps per epoch.
    assert int(net.optimizer.iterations) == 312 * best_epoch
    vocab = utils.load_vocabulary(str(run))
    params = dict(train.DEFAULTS, batch_size=8, seq_len=16)
    stats = utils.scan_text(str(corpus / "validate.txt"))
    steps = utils.steps_per_epoch(stats.num_chars, 8, 16)
    data = train.make_dataset(str(corpus / "validate.txt"), stats, vocab,
                              params)
    losses = [net.evaluate(data, steps=steps, verbose=0,
                           callbacks=[model.StateReset()]) for _ in range(2)]
    assert losses[0] == losses[1]
    history = json.loads((run / "history.json").read_text())
    assert losses[0] == pytest.approx(history["best_val_loss"], rel=1e-5)
    # Without the reset, the second pass starts from the first one's state.
    carried = net.evaluate(data, steps=steps, verbose=0)
    assert carried != losses[0]


# --restore continues the epoch count and the TensorBoard steps, applies a
# new learning rate, and a worse epoch never replaces the best checkpoint.
def test_restore(run, corpus, tmp_path, capsys):
    folder = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run), str(folder)], check=True)
    best_path = utils.find_checkpoint(str(folder))[0]
    best_bytes = open(best_path, "rb").read()
    # Without --data-dir, the run's own training files are read again.
    code, err = run_main(["--checkpoint-dir", folder,
                          "--restore", "--learning-rate", "0.5",
                          "--num-epochs", "1"], capsys)
    history = json.loads((folder / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]][:2] == [1, 2]
    assert history["best_val_loss"] == min(
        e["val_loss"] for e in history["epochs"][:2])
    assert open(best_path, "rb").read() == best_bytes
    if code == 0:  # learning rate 0.5 makes the epoch worse
        assert history["epochs"][2]["epoch"] == 3
        assert history["epochs"][2]["learning_rate"] == 0.5
        assert history["epochs"][2]["saved"] is False
        assert sorted(scalars(str(folder / "logs" / "validation"))) == [
            0, 1, 2]
    else:  # or NaN: then the message says the best checkpoint is kept
        assert "the best checkpoint (epoch" in err


# A kill between writing the checkpoint and history.json: restore trusts the
# checkpoint's name for the best epoch and continues after it.
def test_restore_after_stale_history(run, corpus, tmp_path, capsys):
    folder = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run), str(folder)], check=True)
    history = json.loads((folder / "history.json").read_text())
    _, epoch, val_loss = utils.find_checkpoint(str(folder))
    assert epoch == 2
    stale = {"epochs": history["epochs"][:1], "best_val_loss": None,
             "best_epoch": None}
    (folder / "history.json").write_text(json.dumps(stale))
    code, _ = run_main(["--checkpoint-dir", folder, "--restore",
                        "--num-epochs", "1", "--quiet"], capsys)
    assert code == 0
    history = json.loads((folder / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert history["epochs"][1]["val_loss"] == val_loss
    assert history["best_val_loss"] == min(val_loss,
                                           history["epochs"][2]["val_loss"])


# A vocab.json that no longer matches the checkpoint is refused, and the
# run is left as it was.
def test_restore_refuses_changed_vocabulary(run, tmp_path, capsys):
    folder = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run), str(folder)], check=True)
    utils.save_vocabulary(str(folder), corpus_vocab("ab"))
    before = (folder / "history.json").read_bytes()
    code, err = run_main(["--checkpoint-dir", folder, "--restore"], capsys)
    assert code == 1
    assert re.search(r"predicts 98 symbols but vocab.json holds 3", err), err
    assert (folder / "history.json").read_bytes() == before


# A restore with an architecture flag that contradicts the run is refused.
def test_restore_refuses_other_shape(run, corpus, capsys):
    code, err = run_main(["--data-dir", corpus, "--checkpoint-dir", run,
                          "--restore", "--rnn-size", "64"], capsys)
    assert code == 1
    assert err.strip() == ("error: --rnn-size 64 contradicts the checkpoint's "
                           "32: drop the flag, or train a new run in another "
                           "--checkpoint-dir")


# A loss that blows up stops the run with a clear line and exit 1.
def test_exploding_loss_stops_training(corpus, tmp_path, capsys):
    folder = tmp_path / "nan"
    code, err = run_main(["--data-dir", corpus, "--checkpoint-dir", folder,
                          "--optimizer", "adagrad", "--learning-rate", "1e30",
                          "--clip-norm", "0", "--quiet"] + TINY, capsys)
    assert code == 1
    assert re.match(r"error: loss became \S+ at epoch 1 step \d+ \(a uniform "
                    r"guess scores 4.5850\)", err), err
    assert "no checkpoint was written" in err
    # A run that wrote no checkpoint leaves no folder to trip over.
    assert not folder.exists()


# Usable but suspicious input trains, with a warning that names the fix.
def test_warnings(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("déjà vu ça été\n" * 40, "utf-8")
    (data / "validate.txt").write_text("déjà vu\n" * 30, "utf-8")
    code = train.main([str(a) for a in ["--data-dir", data,
                       "--checkpoint-dir", tmp_path / "run", "--num-epochs",
                       "1"] + TINY])
    out, err = capsys.readouterr()
    assert code == 0
    # The result, the best checkpoint's path, is the only line on stdout.
    assert out == utils.find_checkpoint(str(tmp_path / "run"))[0] + "\n"
    assert "warning: only 4 steps per epoch" in err
    assert ("warning: 33.3% of the training text is unknown to the fixed "
            "vocabulary: consider --vocab corpus") in err
