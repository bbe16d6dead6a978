"""Peak memory of training on a 1 GB corpus against a 10 MB one.

Builds both corpora by repeating the default training text in a temporary
folder, then in a fresh process for each: scans the file (as train.py does),
builds the reference model and trains it for --steps steps on the lazy batch
generator. TensorFlow's allocator makes peak RSS vary by tens of MiB from one
process to the next, so each case runs --repeats times, alternating, and the
medians are compared. The generator's memory bound holds when the ratio of
the medians stays close to 1.

    python bench/train_memory.py --steps 50 --big-mb 100
    python bench/train_memory.py
"""

import argparse
import os
import statistics
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
DEFAULT_TEXT = os.path.join(ROOT, "data", "fortunes-split", "train.txt")


def make_corpus(source, path, size_bytes):
    """Repeat source until path holds at least size_bytes."""
    with open(source, "rb") as f:
        block = f.read()
    with open(path, "wb") as out:
        written = 0
        while written < size_bytes:
            out.write(block)
            written += len(block)
    return written


def child(path, steps):
    """Train the reference model for `steps` steps; print peak RSS in KiB."""
    import train
    import model
    import utils

    params = dict(train.DEFAULTS, checkpoint_dir=None)
    stats = utils.scan_text(path)
    vocab = utils.build_vocabulary("fixed")
    net = model.build_model(vocab.size, params["batch_size"],
                            params["seq_len"], params["num_layers"],
                            params["rnn_size"], params["embedding_size"],
                            params["drop_rate"])
    model.compile_model(net, params["optimizer"], None, params["clip_norm"])
    data = train.make_dataset(path, stats, vocab, params)
    net.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure(path, steps):
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", path,
                          "--steps", str(steps)], check=True,
                         capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024, time.perf_counter() - started


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", default=DEFAULT_TEXT,
                   help="text to repeat (default: the prepared fortunes)")
    p.add_argument("--steps", type=int, default=200,
                   help="training steps per case (default: 200)")
    p.add_argument("--small-mb", type=int, default=10)
    p.add_argument("--big-mb", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.steps)
    if not os.path.isfile(args.text):
        sys.exit(f"error: {args.text} not found: run prepare_data.py first")
    with tempfile.TemporaryDirectory() as tmp:
        cases = {}
        for name, mb in (("small", args.small_mb), ("big", args.big_mb)):
            path = os.path.join(tmp, f"{name}.txt")
            cases[name] = (path, make_corpus(args.text, path, mb * 2**20))
        rss = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (path, size) in cases.items():
                peak, seconds = measure(path, args.steps)
                rss[name].append(peak)
                print(f"{size / 2**20:8,.0f} MiB corpus: peak RSS "
                      f"{peak:7,.0f} MiB ({args.steps} steps, "
                      f"{seconds:.0f} s)", flush=True)
    small, big = (statistics.median(rss[n]) for n in ("small", "big"))
    print(f"median peak RSS: {small:,.0f} MiB small, {big:,.0f} MiB big; "
          f"ratio big/small {big / small:.3f} (target: at most 1.10)")

if __name__ == "__main__":
    main()
