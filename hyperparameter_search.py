"""Search the trainer's hyperparameters with hyperopt, resumably.

Each trial calls train.train() with sampled settings in a fresh Python
process and writes into <experiment-dir>/<trial_num>/ the run folder that
train.py writes (checkpoint, settings.json, history.json, TensorBoard logs)
plus trial.json, the trial's result. After every trial the search rewrites
trials.csv (ranked by val_loss, with the Pareto front of val_loss against
seconds per epoch and each trial's train.py flags) and pareto.png (the same
front, drawn). search.json keeps the search's own settings, so that a
search killed at any moment continues with the same command and --resume.
Point TensorBoard at <experiment-dir> to compare trials in its HParams tab.

    python hyperparameter_search.py --num-trials 4 --max-epochs-per-trial 1
    python hyperparameter_search.py
    python hyperparameter_search.py --resume
    python hyperparameter_search.py --data-dir data/tweets-split \\
        --gpus 0,1,2,3
"""

import argparse
import collections
import csv
import ctypes
import ctypes.util
import fcntl
import gc
import glob
import io
import json
import logging
import math
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings

import numpy as np

import train
import utils
from utils import log

# NOTE: hyperopt, pyspark, matplotlib and tensorboard are imported where
# they are used: trial processes import this module and need none of them,
# and bad flags are reported before any of them loads.

HERE = os.path.dirname(os.path.abspath(__file__))
# The tutorial's search space. Labels are train.py's setting names; the
# format is the one --space files use (see SPACE_HELP).
SEARCH_SPACE = {
    "batch_size": {"choice": [16, 32, 64, 128, 256, 512]},
    "drop_rate": {"uniform": [0.0, 0.5]},
    "embedding_size": {"choice": [16, 32, 64, 128, 256]},
    "num_layers": {"choice": [1, 2]},
    "rnn_size": {"choice": [64, 128, 256, 512]},
    "seq_len": {"choice": [16, 32, 64, 128, 256]},
    "optimizer": {"choice": ["rmsprop", "adagrad", "adadelta", "adam"]},
    "clip_norm": {"choice": [0.0, 5.0]},
}
SPACE_KINDS = ("choice", "uniform", "quniform", "loguniform")
DEFAULTS = {
    "num_trials": 40, "max_epochs_per_trial": 10, "algo": "tpe",
    "data_dir": train.DEFAULTS["data_dir"], "parallelism": 1,
}
# The small subsets prepare_data.py --subset-lines 80000 writes; the full
# split is the fallback.
DATA_FILES = (("train-80k.txt", "validate-20k.txt"),
              ("train.txt", "validate.txt"))
# Settings that must match when a search is resumed (num_trials may grow).
FIXED_ON_RESUME = ("max_epochs_per_trial", "algo", "random_seed", "space",
                   "train_path", "val_path")
# Seeds numpy's generator accepts and train.py's seed + n stays an int.
MAX_SEED = 2**32 - 1
# Spark master URLs: local, local[N], local[*], local[N,F], yarn,
# spark://HOST:PORT[,HOST:PORT...], k8s://...
SPARK_MASTER = re.compile(
    r"local(\[(\d+|\*)(,\d+)?\])?|yarn"
    r"|spark://[^\s/:,]+:\d+(,[^\s/:,]+:\d+)*|k8s://\S+")
# train.py flags that lead each trials.csv train_flags cell, so that a
# --num-epochs typed after the pasted cell wins.
LEADING_FLAGS = ("num_epochs", "random_seed")
SEARCH_FILE = "search.json"
TRIAL_FILE = "trial.json"
CSV_FILE = "trials.csv"
PLOT_FILE = "pareto.png"
LOCK_FILE = ".lock"
# After a kill -9 the trial process needs a moment to notice and exit.
LOCK_WAIT_SECONDS = 15
CSV_HEAD = ("rank", "trial_num", "val_loss", "train_loss", "num_epochs",
            "avg_epoch_seconds")
CSV_TAIL = ("status", "pareto", "error", "train_flags")
# A trial process starts by importing TensorFlow (seconds); the next one is
# started while the current trial trains, so that cost leaves the critical
# path. Only in serial mode, where the next trial's environment is known.
PRESTART_TRIAL_PROCESS = True
SPACE_HELP = """\
search space file (--space): a JSON object whose keys are train.py setting
names (as in its flags, with underscores) and whose values are either a
fixed value or one of
  {"choice": [value, ...]}
  {"uniform": [low, high]}
  {"quniform": [low, high, step]}      multiples of step from low to high
  {"loguniform": [low, high]}          low > 0, evenly spread in log(value)
Each key replaces that entry of the built-in space (the tutorial's:
batch_size, drop_rate, embedding_size, num_layers, rnn_size, seq_len,
optimizer, clip_norm); a fixed value stops it from being searched. Integer
settings are rounded; sampled fractions keep 4 significant digits. Example:
  {"rnn_size": {"choice": [64, 128]}, "drop_rate": {"uniform": [0, 0.2]},
   "learning_rate": {"loguniform": [0.0001, 0.01]}, "num_layers": 1}
"""


# ------------------------------------------------------------- flag values --

def seed_value(value):
    """A search seed: an integer from 0 to MAX_SEED (text or int)."""
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        value = int(value)
    if not _is_int(value) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{value!r} is not an integer from 0 to "
                         f"{MAX_SEED}")
    return value


def count_value(value):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not _is_int(value) or value < 1:
        raise ValueError(f"{value!r} is not a positive integer")
    return value


def gpu_ids(value):
    """GPU ids from "0,1,2" (or a list): distinct non-negative integers,
    as strings for CUDA_VISIBLE_DEVICES."""
    text = value if isinstance(value, str) else ",".join(map(str, value))
    ids = text.split(",")
    if not all(re.fullmatch(r"\d+", i) for i in ids):
        raise ValueError(f"{text!r} is not a comma-separated list of GPU "
                         "ids such as 0,1,2,3")
    ids = [str(int(i)) for i in ids]
    twice = sorted({i for i in ids if ids.count(i) > 1}, key=int)
    if twice:
        raise ValueError(f"{text!r} names GPU {', '.join(twice)} more than "
                         "once: list each GPU once")
    return ids


def spark_master_url(value):
    if not isinstance(value, str) or not SPARK_MASTER.fullmatch(value):
        raise ValueError(f"{value!r} is not a Spark master URL: use local, "
                         "local[N], spark://HOST:PORT, yarn or "
                         "k8s://https://HOST:PORT")
    return value


def path_value(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a path: give a file or folder "
                         "name (an empty one would mean the current folder)")
    return value


def algo_value(value):
    if value not in ("tpe", "rand"):
        raise ValueError(f"{value!r} is not an algorithm: use tpe or rand")
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def flag_type(check):
    """check as an argparse type: its ValueError becomes argparse's one
    error line, which names the flag."""
    def parse(text):
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = check.__name__
    return parse


# The checks argparse runs, run again for settings given to search().
FLAG_CHECKS = {
    "num_trials": count_value, "max_epochs_per_trial": count_value,
    "parallelism": count_value, "algo": algo_value,
    "random_seed": seed_value, "gpus": gpu_ids,
    "spark_master": spark_master_url, "experiment_dir": path_value,
    "data_dir": path_value, "train_path": path_value,
    "val_path": path_value, "space": path_value,
}


def check_flag_values(s):
    """Check every given setting as its flag's argparse type would."""
    for name, check in FLAG_CHECKS.items():
        if s.get(name) is not None:
            try:
                s[name] = check(s[name])
            except ValueError as e:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} {e}") from None


# ------------------------------------------------------------ search space --

def load_space(path=None):
    """The built-in space with the entries of a JSON file laid over it.

    Raises ValueError naming the file and the entry at fault.
    """
    space = dict(SEARCH_SPACE)
    where = "search space"
    if path is not None:
        where = f"--space {path}"
        try:
            overrides = utils.read_json(path)
        except (OSError, ValueError) as e:
            raise ValueError(f"{where}: cannot read it as JSON ({e})") \
                from None
        if not isinstance(overrides, dict):
            raise ValueError(f"{where}: must hold a JSON object; see --help")
        space.update(overrides)
    for label, entry in space.items():
        check_space_entry(label, entry, where)
    if not searched(space):
        raise ValueError(f"{where}: every entry is fixed, so there is "
                         "nothing to search: make one a distribution, "
                         'e.g. {"rnn_size": {"choice": [64]}}')
    return space


def check_space_entry(label, entry, where):
    """Raise ValueError unless entry is a fixed value or a valid
    distribution whose every possible value train() accepts."""
    if label not in train.DEFAULTS or label == "data_dir":
        raise ValueError(f"{where}: {label!r} is not a train.py setting; "
                         f"use one of {', '.join(settable_names())}")
    if label == "num_epochs":
        raise ValueError(f"{where}: set num_epochs with "
                         "--max-epochs-per-trial")
    if not isinstance(entry, dict):
        values = [entry]
    else:
        values = distribution_ends(label, entry, where)
    for value in values:
        # random_seed is None until train() draws one; check_params wants it
        params = dict(train.DEFAULTS, random_seed=0)
        try:
            params[label] = coerce(label, value)
            train.check_params(params)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None


def settable_names():
    return [name for name in train.DEFAULTS
            if name not in ("data_dir", "num_epochs")]


def distribution_ends(label, entry, where):
    """The values a distribution can take at its extremes (all of them for
    a choice). Raises ValueError on a malformed entry."""
    if len(entry) != 1 or next(iter(entry)) not in SPACE_KINDS:
        raise ValueError(f"{where}: {label}: {json.dumps(entry)} is not one "
                         f"of {', '.join(SPACE_KINDS)}; see --help")
    (kind, args), = entry.items()
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}: {label}: choice needs a non-empty "
                             "list")
        return args
    sizes = {"uniform": 2, "quniform": 3, "loguniform": 2}
    if (not isinstance(args, list) or len(args) != sizes[kind]
            or not all(_is_number(a) for a in args)):
        raise ValueError(f"{where}: {label}: {kind} needs a list of "
                         f"{sizes[kind]} numbers")
    low, high = args[:2]
    if not low < high or (kind == "loguniform" and low <= 0) \
            or (kind == "quniform" and args[2] <= 0):
        raise ValueError(f"{where}: {label}: {kind} {args} needs low < high"
                         f"{', low > 0' if kind == 'loguniform' else ''}"
                         f"{', step > 0' if kind == 'quniform' else ''}")
    return [low, high]


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def setting_type(label):
    """int, float or str: what train() expects for a setting."""
    default = train.DEFAULTS[label]
    if default is None:
        return int if label == "random_seed" else float
    return type(default)


def coerce(label, value):
    """value as train() expects it: integer settings rounded, numbers of
    float settings as float. Raises ValueError for a non-number."""
    kind = setting_type(label)
    if kind not in (int, float):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float,
                                                         np.number)):
        raise ValueError(f"{label} {value!r}: must be a number")
    return int(round(float(value))) if kind is int else float(value)


def searched(space):
    return {label: e for label, e in space.items() if isinstance(e, dict)}


def fixed(space):
    return {label: coerce(label, e) for label, e in space.items()
            if not isinstance(e, dict)}


def hyperopt_space(space):
    """hyperopt's form of the searched entries: {label: expression}."""
    from hyperopt import hp

    expressions = {}
    for label, entry in searched(space).items():
        (kind, args), = entry.items()
        if kind == "loguniform":
            args = [math.log(args[0]), math.log(args[1])]
        expressions[label] = hp.choice(label, args) if kind == "choice" \
            else getattr(hp, kind)(label, *args)
    return expressions


def trial_settings(space, sampled):
    """train() settings for one hyperopt sample (choice values, not
    indices): the fixed entries plus the sampled ones, coerced."""
    params = fixed(space)
    for label, value in sampled.items():
        value = coerce(label, value)
        if "choice" not in space[label] and isinstance(value, float):
            value = float(f"{value:.4g}")
        params[label] = value
    return params


def hyperopt_vals(space, sampled):
    """hyperopt's own record of a sample (a choice's index, else the raw
    number), kept so that a resumed search gives TPE the same history."""
    vals = {}
    for label, value in sampled.items():
        (kind, args), = space[label].items()
        vals[label] = [args.index(value) if kind == "choice"
                       else float(value)]
    return vals


# ------------------------------------------------------- experiment folder --

def trial_folders(exp_dir):
    """{trial_num: folder} of the numbered folders in exp_dir."""
    return {int(name): os.path.join(exp_dir, name)
            for name in os.listdir(exp_dir)
            if name.isascii() and name.isdigit()
            and os.path.isdir(os.path.join(exp_dir, name))}


def read_records(exp_dir):
    """The finished trials' records (trial.json), by trial_num. Raises
    ValueError naming a record that cannot be read or is damaged."""
    records = []
    for num, folder in sorted(trial_folders(exp_dir).items()):
        path = os.path.join(folder, TRIAL_FILE)
        if not os.path.isfile(path):
            continue
        try:
            records.append(check_record(utils.read_json(path), num))
        except (OSError, ValueError) as e:
            raise ValueError(f"trial record {path} is damaged ({e}): delete "
                             f"the folder {folder} and run the search with "
                             f"--resume to train trial {num} again") \
                from None
    return records


# The fields every record has, and those of a finished ("ok") one.
RECORD_FIELDS = {"trial_num": int, "status": str, "params": dict,
                 "hyperopt_vals": dict}
OK_RECORD_FIELDS = {"val_loss": (int, float), "train_loss": (int, float),
                    "num_epochs": int, "avg_epoch_seconds": (int, float)}


def check_record(r, num):
    """r, if it is the record of trial num; else ValueError saying why."""
    if not isinstance(r, dict):
        raise ValueError("not a JSON object")
    fields = dict(RECORD_FIELDS, **OK_RECORD_FIELDS) \
        if r.get("status") == "ok" else dict(RECORD_FIELDS, error=str)
    for name, kind in fields.items():
        if not isinstance(r.get(name), kind) or isinstance(r[name], bool):
            raise ValueError(f"{name} missing or of the wrong type")
    if r["trial_num"] != num:
        raise ValueError(f"trial_num {r['trial_num']} in folder {num}")
    if r["status"] not in ("ok", "failed"):
        raise ValueError(f"status {r['status']!r}")
    return r


def check_records(s, records):
    """records, if they fit the search s: their hyperopt values are those
    of its space, and they are no more than its num_trials."""
    labels = set(searched(s["space"]))
    for r in records:
        vals = r["hyperopt_vals"]
        if set(vals) != labels or not all(
                isinstance(v, list) and len(v) == 1 for v in vals.values()):
            folder = os.path.join(s["experiment_dir"], str(r["trial_num"]))
            raise ValueError(
                f"trial record {os.path.join(folder, TRIAL_FILE)} is "
                f"damaged (hyperopt_vals do not match the search space): "
                f"delete the folder {folder} and run the search with "
                f"--resume to train trial {r['trial_num']} again")
    if len(records) > s["num_trials"]:
        raise ValueError(f"--resume: the search asks for "
                         f"{plural(s['num_trials'], 'trial')} but "
                         f"{len(records)} are already done in "
                         f"{s['experiment_dir']}: pass --num-trials "
                         f"{len(records)} or more")
    return records


def discard_unfinished(exp_dir):
    """Delete the folders of trials a kill interrupted (no trial.json) and
    temp files a kill left; returns the discarded trial numbers."""
    discarded = []
    for num, folder in sorted(trial_folders(exp_dir).items()):
        if not os.path.isfile(os.path.join(folder, TRIAL_FILE)):
            shutil.rmtree(folder)
            discarded.append(num)
    for name in os.listdir(exp_dir):
        if name.startswith(".tmp-"):
            os.unlink(os.path.join(exp_dir, name))
    return discarded


def allocate_trial_folder(exp_dir):
    """Create the lowest-numbered folder not there yet (a discarded
    trial's number is used again); mkdir is atomic, so concurrent trials
    (Spark) never share one. Returns (trial_num, folder)."""
    taken = trial_folders(exp_dir)
    num = 1
    while True:
        folder = os.path.join(exp_dir, str(num))
        try:
            if num not in taken:
                os.mkdir(folder)
                return num, folder
        except FileExistsError:
            pass
        num += 1


def lock_experiment(exp_dir):
    """Take exp_dir's lock for the life of this process and of the trial
    processes that inherit it; a search just killed releases it once its
    trial process has exited. Returns the lock's file descriptor."""
    fd = os.open(os.path.join(exp_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT,
                 0o644)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise ValueError(f"another search is running in {exp_dir}: "
                                 "wait for it to end, or stop it first")
            time.sleep(0.2)


# --------------------------------------------------------------- one trial --

class TrialRunner:
    """hyperopt's objective: trains one trial in a fresh Python process.

    Each call takes the next trial folder under exp_dir and returns
    hyperopt's result dict: {"status": "ok", "loss": val_loss, ...} or
    {"status": "fail", ...}; a trial that raises, diverges, or whose
    process dies is a failed trial, recorded in its trial.json. Picklable,
    so Spark can ship it to its workers. gpus: GPU ids; in serial mode all
    of them are visible to each trial, in parallel mode each trial takes
    one that no other trial on the same machine holds.
    """

    def __init__(self, exp_dir, space, train_path, val_path, num_epochs,
                 random_seed, gpus=(), serial=True, lock_fd=None,
                 num_calls=0):
        self.exp_dir, self.space = exp_dir, space
        self.train_path, self.val_path = train_path, val_path
        self.num_epochs, self.random_seed = num_epochs, random_seed
        self.gpus, self.serial, self.lock_fd = list(gpus), serial, lock_fd
        self.calls_left = num_calls
        self._spare = None

    def __getstate__(self):
        state = dict(self.__dict__, _spare=None, lock_fd=None)
        return state

    def __call__(self, sampled):
        params = trial_settings(self.space, sampled)
        num, folder = allocate_trial_folder(self.exp_dir)
        params.setdefault("random_seed", (self.random_seed + num) % 2**31)
        params["num_epochs"] = self.num_epochs
        spec = {"checkpoint_dir": folder, "train_path": self.train_path,
                "val_path": self.val_path, "searched": list(sampled),
                "record": {"trial_num": num, "params": params,
                           "hyperopt_vals": hyperopt_vals(self.space,
                                                          sampled)}}
        if self.serial:
            log(f"trial {num} started: " + ", ".join(
                f"{k} {params[k]}" for k in sampled))
            record = self._run_serial(spec)
        else:
            record = self._run_parallel(spec)
        if record["status"] == "ok":
            return {"status": "ok", "loss": record["val_loss"],
                    "trial_num": num}
        return {"status": "fail", "trial_num": num}

    def prestart(self):
        """Serial mode: start the next trial's process now, so that it
        imports TensorFlow while the search does something else."""
        if self.serial and PRESTART_TRIAL_PROCESS and self.calls_left > 0 \
                and self._spare is None:
            self._spare = start_trial_process(*self._serial_process_args())

    def _serial_process_args(self):
        env = {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)} \
            if self.gpus else {}
        return env, () if self.lock_fd is None else (self.lock_fd,)

    def _run_serial(self, spec):
        proc, self._spare = self._spare, None
        if proc is None or proc.poll() is not None:
            proc = start_trial_process(*self._serial_process_args())
        self.calls_left -= 1
        self.prestart()
        return run_trial_process(proc, spec)

    def _run_parallel(self, spec):
        gpus = spark_task_gpus()
        if gpus or not self.gpus:
            env = {"CUDA_VISIBLE_DEVICES": gpus} if gpus else {}
            return run_trial_process(start_trial_process(env), spec)
        fd, gpu = acquire_gpu(self.exp_dir, self.gpus)
        try:
            proc = start_trial_process({"CUDA_VISIBLE_DEVICES": gpu}, (fd,))
            return run_trial_process(proc, spec)
        finally:
            os.close(fd)

    def close(self):
        """Stop the spare trial process, if one was started."""
        if self._spare is not None:
            self._spare.kill()
            self._spare.wait()
            self._spare = None


def spark_task_gpus():
    """The GPU addresses Spark's scheduler gave this task, or ''."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return ""
    context = TaskContext.get()
    gpu = context.resources().get("gpu") if context is not None else None
    return ",".join(gpu.addresses) if gpu is not None else ""


def acquire_gpu(exp_dir, gpus):
    """Wait for a GPU of this machine that no other trial holds; returns
    (lock fd, gpu id). The lock lives as long as the fd in any process."""
    host = socket.gethostname()
    while True:
        for gpu in gpus:
            path = os.path.join(exp_dir, f".gpu-{host}-{gpu}.lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd, gpu
            except BlockingIOError:
                os.close(fd)
        time.sleep(1)


def start_trial_process(env=None, keep_fds=()):
    """Start a Python process that imports TensorFlow, then waits on its
    stdin for one trial's spec (a JSON line)."""
    paths = [HERE] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **(env or {}))
    code = "import hyperparameter_search as s; s.trial_process_main()"
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        pass_fds=keep_fds, text=True, encoding="utf-8", errors="replace")


def run_trial_process(proc, spec):
    """Send spec to a started trial process, wait for it, and return the
    trial's record; a process that died without writing one is recorded
    here as a failed trial."""
    try:
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    output_tail = collections.deque(proc.stdout, maxlen=20)
    returncode = proc.wait()
    proc.stdin.close()
    path = os.path.join(spec["checkpoint_dir"], TRIAL_FILE)
    if os.path.isfile(path):
        return utils.read_json(path)
    record = dict(spec["record"], status="failed",
                  error=describe_exit(returncode, output_tail))
    utils.atomic_write_json(path, record)
    return record


def describe_exit(returncode, output_tail):
    last = next((line.strip() for line in reversed(output_tail)
                 if line.strip()), "")
    if returncode < 0:
        name = signal.Signals(-returncode).name
        text = f"trial process killed by {name}"
        if -returncode == signal.SIGKILL:
            text += " (the system may have run out of memory)"
    else:
        text = f"trial process exited with status {returncode}"
    return text + (f"; its last output: {last[:300]}" if last else "")


def trial_process_main():
    """Body of a trial process: read the spec, train, write trial.json."""
    utils.set_verbosity(0)
    import model  # noqa: F401 -- TensorFlow loads before the spec arrives

    line = sys.stdin.readline()
    if not line:
        return
    spec = json.loads(line)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    record = run_trial(spec)
    write_trial_events(spec["checkpoint_dir"], record, spec["searched"])
    utils.atomic_write_json(os.path.join(spec["checkpoint_dir"], TRIAL_FILE),
                            record)
    # Skip TensorFlow's teardown: the trial is safely on disk.
    sys.stdout.flush()
    os._exit(0)


def _exit_with_parent():
    # The search holds our stdin open; end of file means it died, even by
    # kill -9, and an orphaned trial would keep writing into its folder.
    sys.stdin.read()
    os._exit(3)


def run_trial(spec):
    """Train one trial in this process; returns its finished record."""
    import resource

    record = dict(spec["record"], status="failed", val_loss=None,
                  train_loss=None, error=None, started=time.time())
    # settings.json's command line: the train.py call that repeats it.
    command = ["train.py", *shlex.split(train_flags(record["params"]))]
    params = dict(record["params"], checkpoint_dir=spec["checkpoint_dir"],
                  command_line=command)
    try:
        _, loss, val_loss, _ = train.train(params, spec["train_path"],
                                           spec["val_path"])
        if math.isfinite(val_loss):
            record.update(status="ok", val_loss=val_loss, train_loss=loss)
        else:
            record["error"] = "no epoch ended with a finite val_loss"
    except (ValueError, train.LossDiverged) as e:
        record["error"] = str(e)
    except Exception as e:  # out of memory, or anything else: recorded
        record["error"] = f"{type(e).__name__}: {e}".split("\n")[0][:500]
        record["traceback"] = traceback.format_exc()
    record["train_seconds"] = time.time() - record["started"]
    record.update(epoch_figures(spec["checkpoint_dir"]))
    record["peak_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return record


def epoch_figures(folder):
    """num_epochs and avg_epoch_seconds from a run's history.json."""
    path = os.path.join(folder, train.HISTORY_FILE)
    epochs = utils.read_json(path)["epochs"] if os.path.isfile(path) else []
    seconds = [e["seconds"] for e in epochs if e["seconds"] is not None]
    return {"num_epochs": len(epochs),
            "avg_epoch_seconds": sum(seconds) / len(seconds) if seconds
            else None}


# ---------------------------------------------------------------- HParams --

def write_event_file(folder, summaries, suffix):
    """Write TensorBoard summaries (step 0) as one event file, atomically,
    without TensorFlow."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    now = time.time()
    writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2")
                 .SerializeToString())
    for summary in summaries:
        writer.write(event_pb2.Event(wall_time=now, step=0, summary=summary)
                     .SerializeToString())
    name = f"events.out.tfevents.{int(now):010d}.{suffix}"
    utils.atomic_write_bytes(os.path.join(folder, name), buffer.getvalue())


def hparams_domain(entry):
    """TensorBoard's domain for a search-space entry, or None."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    (kind, args), = entry.items()
    if kind == "choice":
        types = {type(a) for a in args}
        return hp.Discrete(args) if len(types) == 1 and types <= {
            int, float, str} else None
    if kind == "quniform" and all(float(a).is_integer() for a in args):
        return hp.IntInterval(int(args[0]), int(args[1]))
    return hp.RealInterval(float(args[0]), float(args[1]))


def write_hparams_config(exp_dir, space):
    """The experiment's hyperparameters and metrics, at the log root."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    hparams = [hp.HParam(label, hparams_domain(entry))
               for label, entry in searched(space).items()]
    hparams.append(hp.HParam("status", hp.Discrete(["failed", "ok"])))
    metrics = [
        hp.Metric("val_loss", display_name="val_loss (best epoch)"),
        hp.Metric("avg_epoch_seconds", display_name="seconds per epoch"),
        hp.Metric("train_loss", display_name="loss (best epoch)"),
        hp.Metric("num_epochs"),
        hp.Metric("epoch_loss", group="logs/validation",
                  display_name="val_loss (last epoch)"),
    ]
    write_event_file(exp_dir, [hp.hparams_config_pb(hparams, metrics)],
                     "hparams")


def write_trial_events(folder, record, labels):
    """One trial's hyperparameters and results for the HParams tab."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    values = {label: record["params"][label] for label in labels}
    values["status"] = record["status"]
    summaries = [hp.hparams_pb(values, trial_id=str(record["trial_num"]),
                               start_time_secs=record["started"])]
    for name in ("val_loss", "avg_epoch_seconds", "train_loss",
                 "num_epochs"):
        if record.get(name) is not None:
            value = summary_pb2.Summary.Value(tag=name,
                                              simple_value=record[name])
            summaries.append(summary_pb2.Summary(value=[value]))
    write_event_file(folder, summaries, "hparams")


# ------------------------------------------------------------------ results --

def rank_records(records):
    """Finished trials by val_loss (ties by trial_num), failed ones after,
    by trial_num."""
    ok = sorted((r for r in records if r["status"] == "ok"),
                key=lambda r: (r["val_loss"], r["trial_num"]))
    failed = sorted((r for r in records if r["status"] != "ok"),
                    key=lambda r: r["trial_num"])
    return ok + failed


def pareto_front(records):
    """trial_nums of the finished trials that no other finished trial
    matches or beats on both val_loss and avg_epoch_seconds while beating
    them on one: each is the best val_loss for its speed."""
    points = [(r["val_loss"], r["avg_epoch_seconds"], r["trial_num"])
              for r in records if r["status"] == "ok"]
    return {num for loss, secs, num in points
            if not any(lo <= loss and s <= secs and (lo < loss or s < secs)
                       for lo, s, _ in points)}


def train_flags(params):
    """params as train.py flags: each setting's flag is its name with
    dashes; None (the default, e.g. the optimizer's learning rate) is
    left out, and floats keep every digit. --num-epochs and --random-seed
    come first, so that the same flag typed after the cell wins."""
    flags = []
    names = [*LEADING_FLAGS, *(n for n in train.DEFAULTS
                               if n not in LEADING_FLAGS)]
    for name in names:
        value = params.get(name)
        if value is not None:
            text = repr(value) if isinstance(value, float) else str(value)
            flags += ["--" + name.replace("_", "-"), shlex.quote(text)]
    return " ".join(flags)


def csv_labels(space):
    """Hyperparameter columns: the tutorial's, then any other searched."""
    return list(SEARCH_SPACE) + [label for label in searched(space)
                                 if label not in SEARCH_SPACE]


def _fmt(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def csv_rows(records, labels):
    front = pareto_front(records)
    rank = 0
    for r in rank_records(records):
        ok = r["status"] == "ok"
        rank += ok
        row = {"rank": rank if ok else "", "trial_num": r["trial_num"],
               "val_loss": _fmt(r.get("val_loss"), 4),
               "train_loss": _fmt(r.get("train_loss"), 4),
               "num_epochs": r.get("num_epochs", 0),
               "avg_epoch_seconds": _fmt(r.get("avg_epoch_seconds"), 2),
               "status": r["status"],
               "pareto": ("yes" if r["trial_num"] in front else "no")
               if ok else "",
               "error": r.get("error") or "",
               "train_flags": train_flags(r["params"])}
        row.update({label: r["params"].get(label, "") for label in labels})
        yield row


def write_csv(exp_dir, records, labels):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*CSV_HEAD, *labels, *CSV_TAIL],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(records, labels))
    utils.atomic_write_text(os.path.join(exp_dir, CSV_FILE), text.getvalue())


def write_plot(exp_dir, records):
    """val_loss against seconds per epoch, Pareto front in red, each point
    labelled with its trial number."""
    from matplotlib.figure import Figure

    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return
    front = sorted((r for r in ok if r["trial_num"] in pareto_front(ok)),
                   key=lambda r: r["avg_epoch_seconds"])
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter([r["avg_epoch_seconds"] for r in ok],
               [r["val_loss"] for r in ok], color="tab:blue", s=18)
    ax.plot([r["avg_epoch_seconds"] for r in front],
            [r["val_loss"] for r in front], "o-", color="tab:red",
            drawstyle="steps-post", markerfacecolor="none", markersize=9,
            label="Pareto front: no trial is both faster and better")
    for r in ok:
        ax.annotate(str(r["trial_num"]),
                    (r["avg_epoch_seconds"], r["val_loss"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    seconds = [r["avg_epoch_seconds"] for r in ok]
    if max(seconds) > 10 * min(seconds):
        ax.set_xscale("log")
    ax.set_xlabel("seconds per epoch")
    ax.set_ylabel("val_loss (best epoch)")
    failed = len(records) - len(ok)
    ax.set_title(f"{len(ok)} finished trials"
                 + (f" ({failed} failed, not shown)" if failed else ""))
    ax.legend()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=100)
    utils.atomic_write_bytes(os.path.join(exp_dir, PLOT_FILE),
                             image.getvalue())


class Outputs:
    """Rewrites trials.csv and pareto.png from the trial folders, and
    prints a progress line for each trial finished since the last call."""

    def __init__(self, exp_dir, space, total, records):
        self.exp_dir, self.labels = exp_dir, csv_labels(space)
        self.total = total
        self.started = time.monotonic()
        self.seen = {r["trial_num"] for r in records}
        self.done_before = len(self.seen)
        self.lock = threading.Lock()

    def refresh(self):
        with self.lock:
            records = read_records(self.exp_dir)
            write_csv(self.exp_dir, records, self.labels)
            write_plot(self.exp_dir, records)
            release_free_memory()
            for r in records:
                if r["trial_num"] not in self.seen:
                    self.seen.add(r["trial_num"])
                    log(self.progress_line(r, records))
            return records

    def progress_line(self, record, records):
        done = len(self.seen)
        width = 20
        filled = width * min(done, self.total) // self.total
        bar = "[" + "#" * filled + "-" * (width - filled) + "]"
        elapsed = time.monotonic() - self.started
        eta = elapsed / (done - self.done_before) * max(0, self.total - done)
        if record["status"] == "ok":
            what = (f"val_loss {record['val_loss']:.4f}, "
                    f"{plural(record['num_epochs'], 'epoch')}, "
                    f"{record['avg_epoch_seconds']:.1f} s/epoch")
        else:
            what = f"failed: {record['error'][:120]}"
        best = rank_records(records)[0]
        best_text = (f"best {best['val_loss']:.4f} (trial "
                     f"{best['trial_num']})" if best["status"] == "ok"
                     else "no finished trial yet")
        return (f"{bar} {done}/{self.total} trial {record['trial_num']} "
                f"{what} | {best_text} | {utils.clock(elapsed)} elapsed, "
                f"ETA {utils.clock(eta)}")


def release_free_memory():
    """Free the last plot (matplotlib figures hold reference cycles) and
    hand the heap it used back to the system (glibc only).

    NOTE: after freeing a large buffer glibc raises its mmap threshold, so
    the next plots' buffers come from the heap and stay mapped: without
    this the search's RSS crept up ~20 MiB (12%) over its first 25 trials,
    with Python's own allocations flat.
    """
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def plural(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ------------------------------------------------------------------ search --

def resolve_settings(settings):
    """Fill defaults, or on resume the saved search's settings; refuse a
    flag that contradicts them. settings holds None for flags not given."""
    s = dict(settings)
    check_flag_values(s)
    if s.get("experiment_dir") is None:
        trials = s.get("num_trials") or DEFAULTS["num_trials"]
        epochs = s.get("max_epochs_per_trial") \
            or DEFAULTS["max_epochs_per_trial"]
        s["experiment_dir"] = os.path.join(
            HERE, "checkpoints", f"{trials}-trials-{epochs}-epochs")
    s["experiment_dir"] = os.path.abspath(s["experiment_dir"])
    s["space_file"] = s.get("space")
    if s["space_file"] is not None:
        s["space"] = load_space(s["space_file"])
    if s.get("data_dir") or s.get("train_path") or s.get("val_path"):
        s["train_path"], s["val_path"] = data_paths(s)
    if s.get("resume"):
        s = merge_saved(s, read_search_file(s["experiment_dir"]))
    else:
        check_new_experiment(s["experiment_dir"])
    for name in ("num_trials", "max_epochs_per_trial", "algo"):
        if s.get(name) is None:
            s[name] = DEFAULTS[name]
    if s.get("space") is None:
        s["space"] = load_space()
    if s.get("train_path") is None:
        s["train_path"], s["val_path"] = data_paths(s)
    if s.get("random_seed") is None:
        s["random_seed"] = random.randrange(2**31)
    return s


def data_paths(s):
    """(train, validation) text paths: the flags, else the first pair of
    DATA_FILES present in --data-dir."""
    data_dir = s.get("data_dir") or DEFAULTS["data_dir"]
    pair = next((p for p in DATA_FILES if all(
        os.path.isfile(os.path.join(data_dir, n)) for n in p)),
        DATA_FILES[-1])
    paths = [s.get("train_path") or os.path.join(data_dir, pair[0]),
             s.get("val_path") or os.path.join(data_dir, pair[1])]
    return [os.path.abspath(p) for p in paths]


def read_search_file(exp_dir):
    """search.json of exp_dir, checked; raises ValueError naming the file
    when it is missing or damaged."""
    path = os.path.join(exp_dir, SEARCH_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"--resume: {exp_dir} holds no search (no "
                         f"{SEARCH_FILE}); start it without --resume, or "
                         "give the --experiment-dir of the search")
    try:
        saved = utils.read_json(path)
        check_saved_search(saved, path)
    except (OSError, ValueError) as e:
        raise ValueError(f"--resume: {path} is damaged ({e}): restore it "
                         "from a copy, or start a new search in another "
                         "--experiment-dir (each trial folder stays a "
                         "train.py run)") from None
    return saved


def check_saved_search(saved, path):
    """Raise ValueError unless saved holds every setting search.json
    keeps, each valid."""
    if not isinstance(saved, dict):
        raise ValueError("not a JSON object")
    checks = dict(num_trials=count_value, algo=algo_value,
                  max_epochs_per_trial=count_value,
                  random_seed=seed_value, train_path=path_value,
                  val_path=path_value)
    for name in (*FIXED_ON_RESUME, "num_trials", "space_file",
                 "command_lines"):
        if name not in saved:
            raise ValueError(f"no {name!r}")
    for name, check in checks.items():
        try:
            check(saved[name])
        except ValueError as e:
            raise ValueError(f"{name} {e}") from None
    if not isinstance(saved["space"], dict) \
            or not isinstance(saved["command_lines"], list):
        raise ValueError("space must be an object, command_lines a list")
    for label, entry in saved["space"].items():
        check_space_entry(label, entry, "space")


def merge_saved(s, saved):
    """Take the saved search's settings where no flag was given."""
    for name in FIXED_ON_RESUME:
        if s.get(name) is None:
            s[name] = saved[name]
        elif s[name] != saved[name]:
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"--resume: {flag} {json.dumps(s[name])} contradicts the "
                f"saved search's {json.dumps(saved[name])}: drop the flag, "
                "or start a new search in another --experiment-dir")
    if s.get("num_trials") is None:
        s["num_trials"] = saved["num_trials"]
    if s["space_file"] is None:
        s["space_file"] = saved["space_file"]
    s["command_lines"] = saved["command_lines"] + [s["command_line"]]
    return s


def check_new_experiment(exp_dir):
    if os.path.exists(exp_dir) and not os.path.isdir(exp_dir):
        raise ValueError(f"experiment dir {exp_dir} is a file: choose a "
                         "folder for --experiment-dir")
    if os.path.isdir(exp_dir) and set(os.listdir(exp_dir)) - {LOCK_FILE}:
        raise ValueError(f"experiment dir {exp_dir} already holds files: "
                         "pass --resume to continue its search, or choose "
                         "a new --experiment-dir; nothing was changed")


def check_scale_out(s):
    """Resolve --parallelism and --gpus; parallel trials need pyspark and,
    for a local Spark, Java."""
    s["gpus"] = list(s.get("gpus") or [])
    if s.get("parallelism") is None:
        s["parallelism"] = len(s["gpus"]) or DEFAULTS["parallelism"]
    local = not s.get("spark_master")
    if local and s["gpus"] and s["parallelism"] > len(s["gpus"]):
        raise ValueError(f"--parallelism {s['parallelism']} with "
                         f"{len(s['gpus'])} --gpus: each trial needs a GPU "
                         "of its own; lower --parallelism or list more GPUs")
    s["on_spark"] = s["parallelism"] > 1 or not local
    if not s["on_spark"]:
        return
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ValueError("--parallelism above 1 and --spark-master need "
                         "pyspark: pip install -r requirements-dev.txt") \
            from None
    if local and not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise ValueError("--parallelism runs trials on a local Spark, which "
                         "needs Java 17 or later: install it or set "
                         "JAVA_HOME")


def search(settings):
    """Run a search, or with settings["resume"] continue one.

    settings: the flags' destinations (None where not given) plus
    "command_line". Returns (experiment_dir, records): the finished
    trials' records, ranked as in trials.csv. Raises ValueError on bad
    flags, space, data or saved state, and when Spark cannot start, before
    anything is written; and, naming the path, when the experiment dir
    cannot be written.
    """
    s = resolve_settings(settings)
    check_scale_out(s)
    for path, name in ((s["train_path"], "training"),
                       (s["val_path"], "validation")):
        warn_if_short(train.check_text_file(path, name), s["space"])
    exp_dir = s["experiment_dir"]
    if s.get("resume"):
        check_records(s, read_records(exp_dir))
    session = start_spark(s["parallelism"], s.get("spark_master")) \
        if s["on_spark"] else None
    try:
        try:
            os.makedirs(exp_dir, exist_ok=True)
            lock_fd = lock_experiment(exp_dir)
            try:
                return exp_dir, run_search(s, lock_fd, session)
            finally:
                os.close(lock_fd)
        except OSError as e:
            raise ValueError(experiment_dir_error(exp_dir, e)) from None
    finally:
        if session is not None:
            session.stop()


def experiment_dir_error(exp_dir, e):
    """The one error line for an OSError on the experiment dir."""
    where = e.filename or exp_dir
    return (f"cannot write the experiment dir {exp_dir} ({e.strerror or e}: "
            f"{where}): make it writable (chmod u+w; chattr -i if it is "
            "immutable) or choose another --experiment-dir")


def largest(space, label):
    """The largest value a search-space entry can give."""
    entry = space.get(label, train.DEFAULTS[label])
    values = distribution_ends(label, entry, "search space") \
        if isinstance(entry, dict) else [entry]
    return max(coerce(label, v) for v in values)


def warn_if_short(stats, space):
    """Warn when the largest batch the space can draw does not fit."""
    need = utils.min_chars_needed(largest(space, "batch_size"),
                                  largest(space, "seq_len"))
    if stats.num_chars < need:
        log(f"warning: {stats.path} has {stats.num_chars:,} characters, "
            f"the largest batch_size x seq_len needs {need:,}: trials that "
            "draw a batch too large for it will fail; narrow the space "
            "with --space or use more text")


def run_search(s, lock_fd, session=None):
    exp_dir = s["experiment_dir"]
    # Checked again under the lock; state is written only once it passed.
    records = check_records(s, read_records(exp_dir))
    save_search_file(s)
    discarded = discard_unfinished(exp_dir)
    if discarded:
        log("discarded unfinished trial(s) "
            f"{', '.join(map(str, discarded))}; they run again")
    runner = TrialRunner(exp_dir, s["space"], s["train_path"],
                         s["val_path"], s["max_epochs_per_trial"],
                         s["random_seed"], s["gpus"],
                         serial=not s["on_spark"], lock_fd=lock_fd,
                         num_calls=s["num_trials"] - len(records))
    runner.prestart()
    try:
        if not any(n.startswith("events.out.tfevents.")
                   for n in os.listdir(exp_dir)):
            write_hparams_config(exp_dir, s["space"])
        outputs = Outputs(exp_dir, s["space"], s["num_trials"], records)
        outputs.refresh()
        log(f"search: {len(records)} of {s['num_trials']} trials done, at "
            f"most {plural(s['max_epochs_per_trial'], 'epoch')} each, "
            f"{s['algo']}, {s['parallelism']} at once; training text "
            f"{s['train_path']}, "
            f"validation text {s['val_path']}; writing to {exp_dir}")
        if runner.calls_left > 0:
            run_fmin(s, runner, records, outputs, session)
    finally:
        runner.close()
    return rank_records(outputs.refresh())


def save_search_file(s):
    saved = {name: s[name] for name in
             ("num_trials", *FIXED_ON_RESUME, "space_file")}
    saved["command_lines"] = s.get("command_lines") or [s["command_line"]]
    utils.atomic_write_json(os.path.join(s["experiment_dir"], SEARCH_FILE),
                            saved)


def history_trials(trials, records):
    """Put the recorded trials into an empty hyperopt Trials, in trial
    order, as hyperopt itself would have recorded them."""
    from hyperopt import JOB_STATE_DONE

    docs = []
    for tid, r in enumerate(sorted(records, key=lambda r: r["trial_num"])):
        result = {"status": "ok", "loss": r["val_loss"]} \
            if r["status"] == "ok" else {"status": "fail"}
        vals = r["hyperopt_vals"]
        misc = {"tid": tid, "cmd": ("domain_attachment", "FMinIter_Domain"),
                "workdir": None, "idxs": {k: [tid] for k in vals},
                "vals": vals}
        doc, = trials.new_trial_docs([tid], [None], [result], [misc])
        doc["state"] = JOB_STATE_DONE
        docs.append(doc)
    trials.insert_trial_docs(docs)
    trials.refresh()
    return trials


def search_rng(seed, num_recorded):
    """fmin's generator, advanced past the one draw each recorded trial
    took, so a resumed serial search suggests what an uninterrupted one
    would have."""
    rng = np.random.default_rng(seed)
    for _ in range(num_recorded):
        rng.integers(2**31 - 1)
    return rng


def run_fmin(s, runner, records, outputs, session=None):
    """hyperopt's fmin over the remaining trials: serially here, or on
    the Spark session; outputs are refreshed after each trial."""
    from hyperopt import Trials, rand, tpe

    for name in ("hyperopt", "hyperopt-spark"):
        logging.getLogger(name).setLevel(logging.WARNING)
    kwargs = dict(fn=runner, space=hyperopt_space(s["space"]),
                  algo={"tpe": tpe, "rand": rand}[s["algo"]].suggest,
                  show_progressbar=False, return_argmin=False)
    records = rerun_missing(s, records, outputs, kwargs)
    kwargs.update(max_evals=s["num_trials"],
                  rstate=search_rng(s["random_seed"], len(records)))
    if session is None:
        def after_trial(trials, *args):
            outputs.refresh()
            return False, args

        fmin(trials=history_trials(Trials(), records),
             early_stop_fn=after_trial, **kwargs)
        return
    stop = threading.Event()
    watcher = threading.Thread(target=_refresh_until, args=(outputs, stop))
    watcher.start()
    try:
        from hyperopt import SparkTrials

        trials = SparkTrials(parallelism=s["parallelism"],
                             spark_session=session)
        fmin(trials=history_trials(trials, records), **kwargs)
    finally:
        stop.set()
        watcher.join()


def missing_trial_nums(records):
    """Trial numbers below the highest recorded one that have no record
    (a trial.json deleted, or a parallel trial a kill interrupted)."""
    done = {r["trial_num"] for r in records}
    return [n for n in range(1, max(done, default=0)) if n not in done]


def rerun_missing(s, records, outputs, kwargs):
    """Train each missing trial number n again, one at a time and lowest
    first, with what a serial search suggested for trial n: hyperopt sees
    trials 1 to n-1 and the generator advanced past n-1 draws. Returns
    the records then on disk."""
    from hyperopt import Trials

    for num in missing_trial_nums(records):
        before = [r for r in records if r["trial_num"] < num]
        fmin(trials=history_trials(Trials(), before),
             max_evals=len(before) + 1,
             rstate=search_rng(s["random_seed"], num - 1), **kwargs)
        records = outputs.refresh()
    return records


def fmin(**kwargs):
    """hyperopt's fmin; every trial failing is a result here, not an
    error."""
    import hyperopt
    from hyperopt.exceptions import AllTrialsFailed

    try:
        hyperopt.fmin(**kwargs)
    except AllTrialsFailed:
        # NOTE: hyperopt 0.3.0 raises it even with return_argmin=False,
        # after the last trial; the trials are all recorded by then.
        pass


def _refresh_until(outputs, stop):
    while not stop.wait(2):
        outputs.refresh()


def start_spark(parallelism, master=None):
    """A Spark session: local[parallelism] bound to loopback, or the
    cluster at master. Workers run this interpreter and get the toolkit's
    modules shipped to them."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # hyperopt starts each trial's thread without a session; pyspark 4
    # warns about that on every trial.
    warnings.filterwarnings("ignore", message="Spark session is not "
                            "provided")
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.appName("hyperparameter_search")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false"))
    builder = builder.master(master or f"local[{parallelism}]")
    if is_local_master(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    try:
        session = builder.getOrCreate()
    except Exception as e:
        raise ValueError(f"cannot start Spark ({e}); check --spark-master "
                         "and the Java install") from None
    session.sparkContext.setLogLevel("ERROR")
    # Every module of the toolkit: trials import train, which imports more.
    for path in sorted(glob.glob(os.path.join(HERE, "*.py"))):
        session.sparkContext.addPyFile(path)
    return session


def is_local_master(master):
    return master is None or master.startswith("local")


# ------------------------------------------------------------- entry point --

def create_parser():
    p = utils.OneLineParser(
        description="Search train.py's hyperparameters with hyperopt.",
        epilog=SPACE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", type=flag_type(path_value),
                   help="folder holding train-80k.txt and "
                   "validate-20k.txt (prepare_data.py --subset-lines "
                   "80000), else train.txt and validate.txt (default: "
                   f"{DEFAULTS['data_dir']})")
    g.add_argument("--train-path", type=flag_type(path_value),
                   help="training text (overrides --data-dir)")
    g.add_argument("--val-path", type=flag_type(path_value),
                   help="validation text (overrides --data-dir)")
    g = p.add_argument_group("search")
    g.add_argument("--num-trials", type=train.positive_int, help="trials "
                   "in the whole search; with --resume it may grow (default: "
                   f"{DEFAULTS['num_trials']})")
    g.add_argument("--max-epochs-per-trial", type=train.positive_int,
                   help="train.py --num-epochs of each trial; early "
                   f"stopping may end it sooner (default: "
                   f"{DEFAULTS['max_epochs_per_trial']})")
    g.add_argument("--algo", choices=("tpe", "rand"), help="tpe: Tree of "
                   "Parzen Estimators (random for its first 20 trials); "
                   f"rand: random search (default: {DEFAULTS['algo']})")
    g.add_argument("--random-seed", type=flag_type(seed_value),
                   help=f"seed of the search, 0 to {MAX_SEED}; "
                   "trial n trains with seed + n (default: drawn and "
                   f"saved in {SEARCH_FILE})")
    g.add_argument("--space", metavar="PATH", type=flag_type(path_value),
                   help="JSON file laid over the built-in search space "
                   "(format below)")
    g = p.add_argument_group("output")
    g.add_argument("--experiment-dir", type=flag_type(path_value),
                   help="search folder (default: "
                   "checkpoints/<trials>-trials-<epochs>-epochs beside "
                   "this script)")
    g.add_argument("--resume", action="store_true", help="continue the "
                   "search in --experiment-dir: finished trials are kept, "
                   "an interrupted one runs again")
    g.add_argument("--quiet", action="store_true", help="no progress "
                   "output")
    g = p.add_argument_group("parallel trials (Spark)")
    g.add_argument("--parallelism", type=train.positive_int, help="trials "
                   "at once; above 1 they run on a local Spark (default: "
                   f"{DEFAULTS['parallelism']}, or the number of --gpus)")
    g.add_argument("--spark-master", metavar="URL",
                   type=flag_type(spark_master_url), help="run trials on "
                   "this Spark cluster (spark://HOST:PORT, yarn, "
                   "k8s://https://HOST:PORT, or local[N]); the "
                   "experiment dir must be on a filesystem all workers "
                   "share")
    g.add_argument("--gpus", metavar="IDS", type=flag_type(gpu_ids),
                   help="comma-separated GPU ids, each once, e.g. "
                   "0,1,2,3: each parallel trial gets one of its "
                   "machine's; a serial search shows all of them to "
                   "each trial")
    return p


def main(argv=None):
    args = create_parser().parse_args(argv)
    utils.set_verbosity(0 if args.quiet else 1)
    settings = {k: v for k, v in vars(args).items() if k != "quiet"}
    settings["command_line"] = sys.argv if argv is None else \
        ["hyperparameter_search.py", *argv]
    try:
        exp_dir, records = search(settings)
    except ValueError as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        sys.exit(f"error: cannot use {e.filename or 'a file'} "
                 f"({e.strerror or e}): check the path and its permissions")
    except KeyboardInterrupt:
        sys.exit("interrupted: finished trials are kept; continue with the "
                 "same command and --resume")
    return report(exp_dir, records)


def report(exp_dir, records):
    """One summary line on stderr and the path of trials.csv on stdout;
    exits with an error when no trial finished."""
    csv_path = os.path.join(exp_dir, CSV_FILE)
    ok = [r for r in records if r["status"] == "ok"]
    if not records:
        sys.exit("error: no trial was recorded; run the same command with "
                 "--resume")
    if not ok:
        first = records[0]
        what = "the only trial failed" if len(records) == 1 \
            else f"all {len(records)} trials failed"
        sys.exit(f"error: {what} (trial "
                 f"{first['trial_num']}: {first['error'][:200]}); each "
                 f"one's reason is in {csv_path}")
    best = ok[0]
    front = sorted(pareto_front(records))
    log(f"{plural(len(records), 'trial')}, {len(records) - len(ok)} "
        "failed; best: "
        f"trial {best['trial_num']}, val_loss {best['val_loss']:.4f} at "
        f"{best['avg_epoch_seconds']:.1f} s/epoch; Pareto front (see "
        f"{PLOT_FILE}): trials {', '.join(map(str, front))}")
    print(csv_path)
    return 0


if __name__ == "__main__":
    # Run as the importable module, so that Spark pickles TrialRunner by
    # reference to it rather than by value from __main__.
    import hyperparameter_search

    sys.exit(hyperparameter_search.main())
