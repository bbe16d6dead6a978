"""Search overhead per trial, and memory from the first trial to the last.

Runs a tiny search (--trials trials of a tiny model on a generated corpus)
through hyperparameter_search.search() in this process, and reports:

- time outside training per trial: the search's wall time minus the time
  each trial spent inside train.train(), divided by the number of trials;
  also as a fraction of the mean trial time (target: under 2%). It splits
  into a one-off start-up (until the first trial trains: imports, the
  first trial process loading TensorFlow) and the gap between one trial's
  training and the next one's (median), from which it extrapolates the
  share for a 40-trial search of longer trials;
- RSS of the search process after trial 1 and after the last trial, and
  the peak RSS of trial 1's and of the last trial's own process (target:
  growth under 5%).

It runs the search twice: as shipped, where the next trial's process is
started (and imports TensorFlow) while the current trial trains, and with
that prestart off, the baseline that pays the import between trials. Then,
for comparison, it runs the same trials the other way the issue allowed,
in this process with keras.backend.clear_session() and gc after each.

    python bench/search_overhead.py --trials 3
    python bench/search_overhead.py
"""

import argparse
import gc
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import hyperparameter_search as hs  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402

SPACE = {
    "batch_size": {"choice": [8, 16]}, "seq_len": {"choice": [16, 32]},
    "rnn_size": {"choice": [16, 32]}, "embedding_size": 8, "num_layers": 1,
    "drop_rate": {"uniform": [0, 0.2]},
    "optimizer": {"choice": ["rmsprop", "adam"]}, "clip_norm": 5.0,
}


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_corpus(folder, num_chars):
    line = "trial {} of a tiny search: the quick brown fox, the lazy dog.\n"
    text = "".join(line.format(i) for i in range(num_chars // len(line)))
    for name, part in (("train.txt", text), ("validate.txt",
                                             text[:len(text) // 4])):
        with open(os.path.join(folder, name), "w") as f:
            f.write(part)


def run_search(root, name, args, prestart):
    """(start time, end time, records, {trials done: search RSS then})."""
    hs.PRESTART_TRIAL_PROCESS = prestart
    rss = {}
    refresh = hs.Outputs.refresh

    def measured_refresh(self):
        records = refresh(self)
        rss.setdefault(len(records), rss_mib())
        return records

    hs.Outputs.refresh = measured_refresh
    started = time.time()
    try:
        _, records = hs.search({
            "data_dir": os.path.join(root, "data"),
            "experiment_dir": os.path.join(root, name),
            "space": os.path.join(root, "space.json"),
            "num_trials": args.trials, "max_epochs_per_trial": args.epochs,
            "random_seed": 1, "command_line": sys.argv})
    finally:
        hs.Outputs.refresh = refresh
    return started, time.time(), records, rss


def summarize(name, started, ended, records, rss):
    """One table row; returns (start-up seconds, median gap seconds,
    training seconds per trial, wall seconds per trial)."""
    n = len(records)
    by_num = sorted(records, key=lambda r: r["trial_num"])
    spans = [(r["started"], r["started"] + r["train_seconds"])
             for r in by_num]
    training = sum(end - start for start, end in spans)
    wall = ended - started
    overhead = (wall - training) / n
    startup = spans[0][0] - started
    gap = float(np.median([b[0] - a[1] for a, b in zip(spans, spans[1:])]))
    peak = [by_num[0]["peak_rss_mib"], by_num[-1]["peak_rss_mib"]]
    print(f"{name:<28} {wall / n:6.2f} {training / n:8.2f} {overhead:8.2f} "
          f"{100 * overhead / (wall / n):5.1f}% {startup:7.2f} {gap:5.2f} "
          f"{rss[1]:6.0f} -> {rss[n]:4.0f} ({_growth(rss[1], rss[n])}) "
          f"{peak[0]:5.0f} -> {peak[1]:4.0f} ({_growth(*peak)})")
    return startup, gap, training / n, wall / n


def _growth(first, last):
    return f"{100 * (last - first) / first:+.1f}%"


def run_in_process(root, args):
    """The same trials, each in this process: RSS after each."""
    import hyperopt
    import keras

    rng = np.random.default_rng(1)
    space = hs.load_space(os.path.join(root, "space.json"))
    expressions = hs.hyperopt_space(space)
    utils.set_verbosity(0)
    rss, seconds = [], []
    for num in range(1, args.trials + 1):
        sampled = hyperopt.pyll.stochastic.sample(expressions, rng=rng)
        params = dict(hs.trial_settings(space, sampled), random_seed=num,
                      num_epochs=args.epochs, checkpoint_dir=os.path.join(
                          root, "in-process", str(num)))
        started = time.perf_counter()
        net, _, _, _ = train.train(params, *[
            os.path.join(root, "data", n) for n in ("train.txt",
                                                    "validate.txt")])
        seconds.append(time.perf_counter() - started)
        del net
        keras.backend.clear_session()
        gc.collect()
        rss.append(rss_mib())
    print(f"{'in process (not shipped)':<28} {np.mean(seconds):6.2f} "
          f"{np.mean(seconds):8.2f} {'-':>8} {'-':>6} {'-':>7} {'-':>5} "
          f"{rss[0]:6.0f} -> {rss[-1]:4.0f} ({_growth(rss[0], rss[-1])})")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--chars", type=int, default=40000,
                   help="training text size; validation gets a quarter")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as root:
        os.mkdir(os.path.join(root, "data"))
        make_corpus(os.path.join(root, "data"), args.chars)
        with open(os.path.join(root, "space.json"), "w") as f:
            f.write(hs.json.dumps(SPACE))
        print(f"{args.trials} trials of at most {args.epochs} epochs on "
              f"{args.chars:,} characters; seconds per trial, RSS in MiB")
        print(f"{'mode':<28} {'trial':>6} {'training':>8} {'overhead':>8} "
              f"{'share':>6} {'startup':>7} {'gap':>5} "
              f"{'search RSS t1 -> tN':>21} {'trial peak RSS':>21}")
        figures = []
        for name, prestart in (("prestarted process (shipped)", True),
                               ("cold process (baseline)", False)):
            utils.set_verbosity(0)
            figures.append(summarize(name, *run_search(
                root, name.split()[0], args, prestart)))
            startup, gap = figures[-1][:2]
            # Share under 2% when (startup + 40 gaps) < 2% of 40 trials.
            print(f"{'':<28} under 2% for a 40-trial search once trials "
                  f"last {(startup / 40 + gap) / 0.02:.0f} s or more")
        run_in_process(root, args)
        (_, _, warm_training, warm_wall), (_, _, cold_training, _) = figures
        # Same trials in both modes; on few cores the prestarted process's
        # import competes with training, which the share above hides.
        print(f"prestart: wall per trial {warm_wall:.2f} s against "
              f"{cold_training:.2f} s of training in the baseline "
              f"({warm_wall / cold_training:.2f}x); training itself "
              f"{warm_training - cold_training:+.2f} s per trial")


if __name__ == "__main__":
    main()
