"""Characters per second of train.py's training step against the tutorial's.

For each model size, in the same process and on the same corpus
(data/fortunes-split/train.txt, made by prepare_data.py):

  tutorial  the network as the tutorial builds it (keras.layers.LSTM,
            TimeDistributed Dense), float32, one-hot labels and categorical
            cross-entropy, fed by a Python generator
  train.py  model.build_model(..., fast=True) at train.py's --precision
            (auto unless given), model.compile_model, train.make_dataset

Both run model.fit; a step's time is the gap between two batch ends, and
the rate is batch_size * seq_len over the median step after a warm-up. The
two alternate for --rounds rounds and each keeps its best round, so a burst
of load from another process does not decide the ratio.

Then it checks that train.py learns the same as the float32 reference (the
tutorial network with train.py's sparse loss): both start from the same
weights and train --equiv-epochs epochs on the same batches; it prints the
mean training loss of steps --equiv-steps - 49 to --equiv-steps, and
val_loss on validate.txt at the end, each with its difference to the
reference (the goal is within 1%).

    python bench/train_speed.py --rounds 1 --steps 20 --equiv-steps 0 \\
        --equiv-epochs 0
    python bench/train_speed.py
"""

import argparse
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import train  # noqa: E402
import utils  # noqa: E402

DATA_DIR = os.path.join(os.path.dirname(HERE), "data", "fortunes-split")
# (name, num_layers, rnn_size, batch_size, seq_len); the first is the
# tutorial's reference model.
MODELS = (("1x512 batch 128", 1, 512, 128, 32),
          ("2x256 batch 128", 2, 256, 128, 32),
          ("1x512 batch 32", 1, 512, 32, 32))
EMBEDDING_SIZE = 64
DROP_RATE = 0.05
SEED = 1234
LAST_STEPS = 50


# ------------------------------------------------------------------ setup --

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=DATA_DIR, help="folder holding "
                   "train.txt and validate.txt (default: %(default)s)")
    p.add_argument("--precision", default="auto",
                   choices=train.PRECISION_NAMES,
                   help="train.py's precision (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="alternating "
                   "timing rounds per model (default: %(default)s)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per "
                   "round (default: %(default)s)")
    p.add_argument("--warm-up", type=int, default=5, help="steps left out "
                   "at the start of each round (default: %(default)s)")
    p.add_argument("--equiv-steps", type=int, default=300, help="steps of "
                   "the training-loss comparison, at most one epoch, 0 to "
                   "skip (default: %(default)s)")
    p.add_argument("--equiv-epochs", type=int, default=1, help="epochs "
                   "before the val_loss comparison, 0 to skip (default: "
                   "%(default)s)")
    return p.parse_args(argv)


def machine():
    import fast_lstm
    import keras
    import tensorflow as tf

    flags = sorted(fast_lstm.cpu_flags() & {
        "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    return (f"{_cpu_name()}, {os.cpu_count()} CPUs ({' '.join(flags)}); "
            f"{platform.system()}; TensorFlow {tf.__version__}, Keras "
            f"{keras.__version__}")


def _cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# --------------------------------------------------------------- networks --

def tutorial_network(vocab, shape):
    """The tutorial's network and loss: one-hot labels, float32."""
    import keras
    import model

    num_layers, rnn_size, batch_size, seq_len = shape
    net = model.build_model(vocab.size, batch_size, seq_len, num_layers,
                            rnn_size, EMBEDDING_SIZE, DROP_RATE)
    net.compile(optimizer=keras.optimizers.RMSprop(0.001, clipnorm=5.0),
                loss="categorical_crossentropy")
    return net


def reference_network(vocab, shape):
    """The tutorial's float32 network with train.py's loss and optimizer."""
    import model

    num_layers, rnn_size, batch_size, seq_len = shape
    net = model.build_model(vocab.size, batch_size, seq_len, num_layers,
                            rnn_size, EMBEDDING_SIZE, DROP_RATE)
    return model.compile_model(net, "rmsprop", None, 5.0)


def trainpy_network(vocab, shape, precision):
    import model

    num_layers, rnn_size, batch_size, seq_len = shape
    net = model.build_model(vocab.size, batch_size, seq_len, num_layers,
                            rnn_size, EMBEDDING_SIZE, DROP_RATE,
                            precision=precision, fast=True)
    return model.compile_model(net, "rmsprop", None, 5.0)


def tutorial_batches(path, stats, vocab, batch_size, seq_len):
    """The tutorial's Python generator: (ids, one-hot next ids), forever."""
    for x, y, _ in utils.io_batch_generator(path, batch_size, seq_len,
                                            64 * 2**20, vocab, stats):
        yield x, utils.one_hot_encode(y, vocab.size)


def trainpy_batches(path, stats, vocab, batch_size, seq_len):
    params = dict(train.DEFAULTS, batch_size=batch_size, seq_len=seq_len)
    return train.make_dataset(path, stats, vocab, params)


# ----------------------------------------------------------------- timing --

def step_times(net, data, steps, warm_up):
    """Seconds per step of one fit() call, warm-up steps left out."""
    import keras

    ends = []
    marker = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(
            time.perf_counter()))
    net.fit(data, steps_per_epoch=warm_up + steps, epochs=1, verbose=0,
            shuffle=False, callbacks=[marker])
    return np.diff(ends[warm_up - 1:])


def compare_speed(args, vocab, stats, path, shape, precision):
    """(tutorial chars/s, train.py chars/s), best round of each."""
    import keras

    _, _, batch_size, seq_len = shape
    keras.utils.set_random_seed(SEED)
    runs = {
        "tutorial": (tutorial_network(vocab, shape), tutorial_batches(
            path, stats, vocab, batch_size, seq_len)),
        "train.py": (trainpy_network(vocab, shape, precision),
                     trainpy_batches(path, stats, vocab, batch_size,
                                     seq_len)),
    }
    rates = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (net, data) in runs.items():
            seconds = np.median(step_times(net, data, args.steps,
                                           args.warm_up))
            rates[name].append(batch_size * seq_len / seconds)
    for name, values in rates.items():
        utils.log(f"  {name}: " + ", ".join(f"{v:,.0f}" for v in values)
                  + " chars/s by round")
    return max(rates["tutorial"]), max(rates["train.py"])


# ------------------------------------------------------------ equivalence --

def equivalence(args, vocab, path, precision):
    """Mean loss of the last LAST_STEPS of args.equiv_steps steps, and
    val_loss after args.equiv_epochs epochs: {name: (loss, val_loss)} for
    the float32 reference and train.py, from the same initial weights."""
    import keras
    import model

    shape = MODELS[0][1:]
    _, _, batch_size, seq_len = shape
    stats = utils.scan_text(path)
    val_path = os.path.join(args.data_dir, "validate.txt")
    val_stats = utils.scan_text(val_path)
    steps = utils.steps_per_epoch(stats.num_chars, batch_size, seq_len)
    val_steps = utils.steps_per_epoch(val_stats.num_chars, batch_size,
                                      seq_len)
    keras.utils.set_random_seed(SEED)
    reference = reference_network(vocab, shape)
    weights = reference.get_weights()
    results = {}
    for name in ("float32 reference", "train.py"):
        keras.utils.set_random_seed(SEED)
        net = (reference if name == "float32 reference"
               else trainpy_network(vocab, shape, precision))
        net.set_weights(weights)
        results[name] = train_and_evaluate(
            net, trainpy_batches(path, stats, vocab, batch_size, seq_len),
            trainpy_batches(val_path, val_stats, vocab, batch_size, seq_len),
            steps, val_steps, args)
        model.reset_states(net)
    return results


def train_and_evaluate(net, data, val_data, steps, val_steps, args):
    """Train for args.equiv_epochs epochs of steps (or, with 0, for
    args.equiv_steps steps); return the mean loss of the LAST_STEPS steps
    up to args.equiv_steps (in the first epoch) and val_loss at the end,
    None for a part skipped."""
    import keras
    import model

    means = []  # fit's running mean of the loss, first epoch only

    def record(batch, logs):
        if len(means) == batch:
            means.append(logs["loss"])

    if args.equiv_epochs:
        steps_per_epoch, epochs = steps, args.equiv_epochs
    else:
        steps_per_epoch, epochs = args.equiv_steps, 1
    net.fit(data, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=0,
            shuffle=False, callbacks=[
                keras.callbacks.LambdaCallback(on_train_batch_end=record),
                model.StateReset()])
    loss = val_loss = None
    if args.equiv_steps:
        totals = np.array(means) * np.arange(1, len(means) + 1)
        losses = np.diff(totals, prepend=0.0)[:args.equiv_steps]
        loss = float(np.mean(losses[-LAST_STEPS:]))
    if args.equiv_epochs:
        model.reset_states(net)
        val_loss = float(net.evaluate(val_data, steps=val_steps, verbose=0))
    return loss, val_loss


# ------------------------------------------------------------ entry point --

def main(argv=None):
    args = parse_args(argv)
    import fast_lstm

    precision = fast_lstm.resolve_precision(args.precision)
    path = os.path.join(args.data_dir, "train.txt")
    stats = utils.scan_text(path)
    vocab = utils.build_vocabulary("fixed")
    print(f"machine: {machine()}")
    print(f"corpus: {path} ({stats.num_chars:,} characters); train.py "
          f"precision {args.precision} -> {precision}")
    print(f"{'model':<18}{'tutorial chars/s':>18}{'train.py chars/s':>18}"
          f"{'ratio':>8}")
    for name, *shape in MODELS:
        utils.log(f"timing {name} ...")
        base, fast = compare_speed(args, vocab, stats, path, shape,
                                   precision)
        print(f"{name:<18}{base:>18,.0f}{fast:>18,.0f}{fast / base:>8.2f}",
              flush=True)
    if args.equiv_steps or args.equiv_epochs:
        utils.log("loss equivalence ...")
        results = equivalence(args, vocab, path, precision)
        print_equivalence(results, args)
    return 0


def print_equivalence(results, args):
    (ref_loss, ref_val), (loss, val) = (results["float32 reference"],
                                        results["train.py"])
    if args.equiv_steps:
        print(f"loss, mean of steps {args.equiv_steps - LAST_STEPS + 1}-"
              f"{args.equiv_steps}: float32 reference {ref_loss:.4f}, "
              f"train.py {loss:.4f} ({100 * (loss / ref_loss - 1):+.2f}%)")
    if args.equiv_epochs:
        print(f"val_loss after {args.equiv_epochs} epoch(s): float32 "
              f"reference {ref_val:.4f}, train.py {val:.4f} "
              f"({100 * (val / ref_val - 1):+.2f}%)")


if __name__ == "__main__":
    sys.exit(main())
