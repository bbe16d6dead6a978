"""Train a stateful character-level LSTM on a folder of text.

Reads <data-dir>/train.txt and <data-dir>/validate.txt (UTF-8, one sample per
line), trains Embedding -> LSTM -> softmax, and writes into --checkpoint-dir
the best model so far (model-epochNNN-valX.XXXX.keras), settings.json (the
resolved flags and the command line), vocab.json, history.json (loss and
val_loss per epoch) and TensorBoard logs under logs/. Progress goes to
stderr.

    python train.py --checkpoint-dir checkpoints/tiny --rnn-size 64 \\
        --num-epochs 1
    python train.py --data-dir data/fortunes-split \\
        --checkpoint-dir checkpoints/base --num-epochs 10
    python train.py --checkpoint-dir checkpoints/base --restore \\
        --learning-rate 0.0005 --num-epochs 5
"""

import argparse
import math
import os
import random
import shutil
import sys

import utils
from utils import log

# NOTE: TensorFlow is imported inside train() so that bad flags and bad files
# are reported in a fraction of a second, before it loads.

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = {
    "data_dir": os.path.join(HERE, "data", "fortunes-split"),
    "num_layers": 1, "rnn_size": 512, "embedding_size": 64,
    "batch_size": 128, "seq_len": 32, "drop_rate": 0.05,
    "learning_rate": None, "clip_norm": 5.0, "optimizer": "rmsprop",
    "num_epochs": 10, "patience": 3, "min_delta": 0.01,
    "random_seed": None, "vocab": "fixed", "max_vocab_size": 256,
    "max_bytes_in_ram": 64 * 2**20, "precision": "auto",
}
# Settings a restored run takes from its checkpoint; a flag that contradicts
# one of them is refused because the saved weights or vocabulary depend on it.
FIXED_ON_RESTORE = ("num_layers", "rnn_size", "embedding_size", "batch_size",
                    "seq_len", "drop_rate", "optimizer", "clip_norm", "vocab",
                    "max_vocab_size")
OPTIMIZER_NAMES = tuple(utils.DEFAULT_LEARNING_RATES)
# Keras dtype policies; "auto" picks one per device (fast_lstm.py).
PRECISION_NAMES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# Thresholds of the start-up warnings about usable but suspicious input.
MIN_STEPS_PER_EPOCH = 10
UNKNOWN_WARNING_SHARE = 0.01
SETTINGS_FILE = "settings.json"
HISTORY_FILE = "history.json"
RUN_FILES = (SETTINGS_FILE, HISTORY_FILE, utils.VOCAB_FILE)


class LossDiverged(FloatingPointError):
    """Training stopped because the loss became NaN or infinite."""


# ----------------------------------------------------------------- checks --

def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value}: must be a positive "
                                         "integer")
    return value


def seed_value(text):
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value}: must be in 0 .. 2**32 - 1")
    return value


def vocab_size_value(text):
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 2 (the "
                                         "unknown id and one character)")
    return value


def drop_rate_value(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be in [0, 1)")
    return value


def non_negative_float(text):
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{value}: must be >= 0")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{value}: must be > 0")
    return value


def check_params(params):
    """Raise ValueError on values argparse would have refused (train() is
    also called with plain dicts, by the search script and the tests)."""
    checks = {positive_int: ("num_layers", "rnn_size", "embedding_size",
                             "batch_size", "seq_len", "num_epochs",
                             "max_bytes_in_ram"),
              vocab_size_value: ("max_vocab_size",),
              seed_value: ("random_seed",),
              drop_rate_value: ("drop_rate",),
              non_negative_float: ("clip_norm", "min_delta", "patience")}
    for check, names in checks.items():
        for name in names:
            try:
                check(str(params[name]))
            except (argparse.ArgumentTypeError, ValueError) as e:
                raise ValueError(f"{name}: {e}") from None
    if params["learning_rate"] is not None:
        try:
            positive_float(str(params["learning_rate"]))
        except (argparse.ArgumentTypeError, ValueError):
            raise ValueError(f"learning_rate {params['learning_rate']!r}: "
                             "must be > 0") from None
    if params["optimizer"] not in OPTIMIZER_NAMES:
        raise ValueError(f"optimizer {params['optimizer']!r}: use one of "
                         f"{', '.join(OPTIMIZER_NAMES)}")
    if params["vocab"] not in utils.VOCAB_KINDS:
        raise ValueError(f"vocab {params['vocab']!r}: use one of "
                         f"{', '.join(utils.VOCAB_KINDS)}")
    if params["precision"] not in PRECISION_NAMES:
        raise ValueError(f"precision {params['precision']!r}: use one of "
                         f"{', '.join(PRECISION_NAMES)}")


def check_text_file(path, name):
    if os.path.isdir(path):
        raise ValueError(f"{name} file {path} is a folder: point --data-dir "
                         "at the folder that holds train.txt and validate.txt")
    if not os.path.isfile(path):
        raise ValueError(f"{name} file {path} not found: point --data-dir at "
                         "a folder holding train.txt and validate.txt (make "
                         "one with prepare_data.py)")
    stats = utils.scan_text(path)
    if stats.num_chars == 0:
        raise ValueError(f"{name} file {path} is empty: add text to it")
    return stats


def check_checkpoint_dir(folder, restore):
    """Refuse to overwrite a run, and to restore from anything but one."""
    if not folder:
        raise ValueError("--checkpoint-dir is empty: name a folder")
    exists = os.path.isdir(folder)
    if os.path.exists(folder) and not exists:
        raise ValueError(f"checkpoint dir {folder} is a file: choose a "
                         "folder for --checkpoint-dir")
    if restore:
        if not exists or not os.path.isfile(os.path.join(folder,
                                                         SETTINGS_FILE)):
            raise ValueError(f"--restore: {folder} holds no run (no "
                             f"{SETTINGS_FILE}); train into it without "
                             "--restore first")
        check_writable(folder)
        return
    if exists and os.listdir(folder):
        what = "a run" if _holds_run_files(folder) else "other files"
        raise ValueError(f"checkpoint dir {folder} already holds {what}: "
                         "pass --restore to continue it, or choose a new "
                         "--checkpoint-dir")
    check_writable(folder)


def check_writable(folder):
    """Fail now, not after an epoch, when the run folder cannot be written."""
    existing = folder
    while not os.path.isdir(existing):
        existing = os.path.dirname(os.path.abspath(existing))
    probe = os.path.join(existing, f".write-test-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"cannot write into {existing} ({e.strerror}): "
                         "choose a writable --checkpoint-dir") from None


def _holds_run_files(folder):
    names = os.listdir(folder)
    return (any(f in names for f in RUN_FILES)
            or any(n.startswith("model-epoch") for n in names))


# -------------------------------------------------------------- settings --

def resolve_restore(params, saved):
    """Take shape settings from the saved run; refuse contradicting ones.

    params holds None for every flag the user did not give.
    """
    for name in FIXED_ON_RESTORE:
        if params.get(name) is None:
            params[name] = saved[name]
        elif params[name] != saved[name]:
            raise ValueError(
                f"--{name.replace('_', '-')} {params[name]} contradicts the "
                f"checkpoint's {saved[name]}: drop the flag, or train a new "
                "run in another --checkpoint-dir")
    if params.get("random_seed") is None:
        params["random_seed"] = saved.get("random_seed")
    # Runs from before --precision trained in float32.
    if params.get("precision") is None:
        params["precision"] = saved.get("precision", "float32")
    return params


def fill_defaults(params):
    for name, value in DEFAULTS.items():
        if params.get(name) is None and name != "data_dir":
            params[name] = value
    if params["random_seed"] is None:
        params["random_seed"] = random.randrange(2**31)
    return params


# ------------------------------------------------------------------ train --

def prepare_run(params, train_text_path, val_text_path):
    """Every check that needs no TensorFlow. Returns (params, vocab,
    train_stats, val_stats, saved_history) with params fully resolved."""
    params = dict(params)
    folder = params["checkpoint_dir"]
    restore = bool(params.get("restore"))
    check_checkpoint_dir(folder, restore)
    history = None
    if restore:
        params, history = load_run(params, folder)
    params = fill_defaults(params)
    check_params(params)
    train_stats = check_text_file(train_text_path, "training")
    val_stats = check_text_file(val_text_path, "validation")
    for stats, name in ((train_stats, "training"), (val_stats, "validation")):
        utils.check_text_fits(stats, params["batch_size"], params["seq_len"],
                              name)
    if restore:
        vocab = utils.Vocabulary.from_json(read_run_file(folder,
                                                         utils.VOCAB_FILE))
    else:
        vocab = utils.build_vocabulary(params["vocab"],
                                       train_stats.char_counts,
                                       params["max_vocab_size"])
    return params, vocab, train_stats, val_stats, history


def load_run(params, folder):
    """Settings and history of the run to restore, checked against params.

    history.json is written just after the checkpoint; if a kill fell in
    between, the checkpoint's own name says which epoch and val_loss won.
    """
    checkpoint = utils.find_checkpoint(folder)
    if checkpoint is None:
        raise ValueError(f"--restore: {folder} holds no checkpoint yet (its "
                         "run stopped before a first epoch ended); start "
                         "again in a new --checkpoint-dir")
    saved = read_run_file(folder, SETTINGS_FILE)
    missing = [k for k in FIXED_ON_RESTORE if k not in saved]
    if missing:
        raise ValueError(f"--restore: {folder}/{SETTINGS_FILE} lacks "
                         f"{', '.join(missing)}; it is not a run folder of "
                         "this toolkit")
    history = read_run_file(folder, HISTORY_FILE)
    _, epoch, val_loss = checkpoint
    # The name holds val_loss to 4 decimals; compare at that precision.
    best = history["best_val_loss"]
    if best is None or val_loss < round(best, 4):
        history["best_val_loss"], history["best_epoch"] = val_loss, epoch
    while len(history["epochs"]) < epoch:
        number = len(history["epochs"]) + 1
        history["epochs"].append({
            "epoch": number, "loss": None, "seconds": None,
            "val_loss": val_loss if number == epoch else None,
            "learning_rate": None, "saved": number == epoch})
    return resolve_restore(params, saved), history


def read_run_file(folder, name):
    path = os.path.join(folder, name)
    try:
        return utils.read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"--restore: cannot read {path} ({e}); it is not "
                         "a run folder of this toolkit") from None


def train(params, train_text_path, val_text_path):
    """Train (or, with params["restore"], continue) one run.

    params: dict with "checkpoint_dir" and any of DEFAULTS' keys (missing
    ones take the defaults; on restore, from the saved run). Returns
    (model, loss, val_loss, num_epochs): the trained Keras model, the
    training loss and val_loss of the best epoch, and the epochs run by this
    call. Raises ValueError on bad input, LossDiverged on a NaN loss (the best
    checkpoint is kept).
    """
    params, vocab, train_stats, val_stats, history = prepare_run(
        params, train_text_path, val_text_path)
    folder = params["checkpoint_dir"]
    import fast_lstm

    params["precision"] = fast_lstm.resolve_precision(params["precision"])
    if params.get("restore"):
        return fit_run(params, vocab, train_stats, val_stats, history)

    # A new run folder: settings, vocabulary, history
    existed = os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    write_settings(folder, params, train_text_path, val_text_path)
    utils.save_vocabulary(folder, vocab)
    history = {"epochs": [], "best_val_loss": None, "best_epoch": None}
    try:
        return fit_run(params, vocab, train_stats, val_stats, history)
    except BaseException:
        # A run that failed before its first checkpoint leaves no trace, so
        # the same command can be run again.
        if utils.find_checkpoint(folder) is None:
            shutil.rmtree(folder, ignore_errors=True)
            if existed:
                os.makedirs(folder, exist_ok=True)
        raise


def fit_run(params, vocab, train_stats, val_stats, history):
    """Build or restore the model and fit it; the rest of train()."""
    import keras
    import model

    folder = params["checkpoint_dir"]
    keras.utils.set_random_seed(params["random_seed"])

    # Model: a new one, or the best checkpoint with its optimizer state
    if params.get("restore"):
        path, _, _ = utils.find_checkpoint(folder)
        net = restore_model(path, params, vocab.size)
        record_restore(folder, params)
        if params.get("learning_rate") is not None:
            net.optimizer.learning_rate.assign(params["learning_rate"])
        log(f"restored {path} (epoch {len(history['epochs'])}), learning "
            f"rate {float(net.optimizer.learning_rate):.6g}")
    else:
        net = model.build_model(
            vocab.size, params["batch_size"], params["seq_len"],
            params["num_layers"], params["rnn_size"],
            params["embedding_size"], params["drop_rate"],
            precision=params["precision"], fast=True)
        model.compile_model(net, params["optimizer"], params["learning_rate"],
                            params["clip_norm"])

    # Data: endless generators, one epoch every steps_per_epoch batches
    steps = utils.steps_per_epoch(train_stats.num_chars, params["batch_size"],
                                  params["seq_len"])
    val_steps = utils.steps_per_epoch(val_stats.num_chars,
                                      params["batch_size"], params["seq_len"])
    train_data = make_dataset(train_stats.path, train_stats, vocab, params)
    val_data = make_dataset(val_stats.path, val_stats, vocab, params)
    log_summary(params, vocab, train_stats, val_stats, net, steps, val_steps)

    # Fit
    initial_epoch = len(history["epochs"])
    callbacks, recorder = model.make_callbacks(folder, params, history,
                                               steps, val_steps)
    net.fit(train_data, steps_per_epoch=steps, validation_data=val_data,
            validation_steps=val_steps, initial_epoch=initial_epoch,
            epochs=initial_epoch + params["num_epochs"], shuffle=False,
            verbose=0,
            callbacks=callbacks)

    # Summary
    if recorder.diverged:
        raise LossDiverged(recorder.diverged)
    best = min((e for e in history["epochs"] if e["val_loss"] is not None),
               key=lambda e: e["val_loss"], default=None)
    if best is None:
        raise LossDiverged("val_loss was never finite, so no checkpoint was "
                           "written: lower --learning-rate or set "
                           "--clip-norm")
    log(f"best val_loss {best['val_loss']:.4f} at epoch {best['epoch']}: "
        f"{utils.find_checkpoint(folder)[0]}")
    epochs_run = len(history["epochs"]) - initial_epoch
    loss = float("nan") if best["loss"] is None else best["loss"]
    return net, loss, best["val_loss"], epochs_run


def restore_model(path, params, vocab_size):
    """The checkpoint at path, compiled, as the fast network at
    params["precision"]. A checkpoint saved otherwise (an older run, or
    another --precision) is rebuilt; weights and optimizer state carry
    over."""
    import fast_lstm
    import keras
    import model

    net = model.load_checkpoint(path)
    if net.output_shape[-1] != vocab_size:
        raise ValueError(f"--restore: {path} predicts {net.output_shape[-1]}"
                         f" symbols but {utils.VOCAB_FILE} holds {vocab_size}"
                         "; the run folder was changed, restore from an "
                         "intact one")
    lstms = [x for x in net.layers if isinstance(x, keras.layers.LSTM)]
    if all(isinstance(x, fast_lstm.FastLSTM)
           and x.dtype_policy.name == params["precision"] for x in lstms):
        return net
    fresh = model.build_model(
        vocab_size, params["batch_size"], params["seq_len"],
        params["num_layers"], params["rnn_size"], params["embedding_size"],
        params["drop_rate"], precision=params["precision"], fast=True)
    fresh.set_weights(net.get_weights())
    model.compile_model(fresh, params["optimizer"],
                        float(net.optimizer.learning_rate),
                        params["clip_norm"])
    fresh.optimizer.build(fresh.trainable_variables)
    old, new = (getattr(opt, "inner_optimizer", opt)
                for opt in (net.optimizer, fresh.optimizer))
    for source, target in zip(old.variables, new.variables, strict=True):
        target.assign(source)
    return fresh


def record_restore(folder, params):
    """Keep settings.json's precision that of the run's checkpoints, and
    note each restore's command line and learning rate."""
    path = os.path.join(folder, SETTINGS_FILE)
    settings = utils.read_json(path)
    settings["precision"] = params["precision"]
    settings.setdefault("restores", []).append({
        "command_line": params.get("command_line", sys.argv),
        "learning_rate": params.get("learning_rate")})
    utils.atomic_write_json(path, settings)


def make_dataset(path, stats, vocab, params):
    """tf.data pipeline over io_batch_generator yielding (x, y) int32
    batches of shape (batch_size, seq_len), forever."""
    import tensorflow as tf

    shape = (params["batch_size"], params["seq_len"])

    def batches():
        for x, y, _ in utils.io_batch_generator(
                path, *shape, params["max_bytes_in_ram"], vocab, stats):
            yield x, y

    spec = tf.TensorSpec(shape, tf.int32)
    data = tf.data.Dataset.from_generator(batches,
                                          output_signature=(spec, spec))
    # NOTE: autotuned prefetch made fit() hang idle for seconds after its
    # last step in about half the runs; a fixed depth does not.
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.prefetch(4).with_options(options)


def write_settings(folder, params, train_text_path, val_text_path):
    settings = {k: v for k, v in params.items() if k != "restore"}
    settings.setdefault("command_line", sys.argv)
    settings["train_text_path"] = os.path.abspath(train_text_path)
    settings["val_text_path"] = os.path.abspath(val_text_path)
    utils.atomic_write_json(os.path.join(folder, SETTINGS_FILE), settings)


def log_summary(params, vocab, train_stats, val_stats, net, steps,
                val_steps):
    unknown = vocab.count_unknown(train_stats.char_counts)
    chars_per_step = params["batch_size"] * params["seq_len"]
    log(f"training text: {train_stats.num_chars:,} characters, "
        f"{unknown:,} unknown to the vocabulary "
        f"({100 * unknown / train_stats.num_chars:.2f}%)")
    log(f"validation text: {val_stats.num_chars:,} characters")
    log(f"vocabulary: {vocab.size:,} symbols ({vocab.kind}); "
        f"parameters: {net.count_params():,}; precision: "
        f"{params['precision']}")
    log(f"steps per epoch: {steps:,} training, {val_steps:,} validation "
        f"({chars_per_step:,} characters each); unused tail: "
        f"{train_stats.num_chars - 1 - steps * chars_per_step:,} characters")
    log(f"writing to {params['checkpoint_dir']}")
    if steps < MIN_STEPS_PER_EPOCH:
        log(f"warning: only {steps} steps per epoch; the model will see "
            "little text between checkpoints: lower --batch-size or "
            "--seq-len, or add text")
    if unknown > UNKNOWN_WARNING_SHARE * train_stats.num_chars:
        log(f"warning: {100 * unknown / train_stats.num_chars:.1f}% of the "
            f"training text is unknown to the {vocab.kind} vocabulary: "
            + ("consider --vocab corpus" if vocab.kind == "fixed" else
               "consider a larger --max-vocab-size"))


# ------------------------------------------------------------ entry point --

def create_parser():
    p = utils.OneLineParser(
        description="Train a stateful character-level LSTM.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=None)
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="folder holding train.txt and "
                   f"validate.txt (default: {DEFAULTS['data_dir']})")
    g.add_argument("--vocab", choices=utils.VOCAB_KINDS,
                   help="'fixed': printable ASCII, so a model can be "
                   "fine-tuned on any text; 'corpus': the most frequent "
                   "characters of train.txt, emoji included "
                   f"(default: {DEFAULTS['vocab']})")
    g.add_argument("--max-vocab-size", type=vocab_size_value, help="cap for "
                   f"--vocab corpus (default: {DEFAULTS['max_vocab_size']})")
    g.add_argument("--max-bytes-in-ram", type=positive_int, help="text held "
                   "in memory at once, in bytes (default: "
                   f"{DEFAULTS['max_bytes_in_ram']:,})")
    g = p.add_argument_group("model")
    for name, text in (("num_layers", "LSTM layers"),
                       ("rnn_size", "units per LSTM layer"),
                       ("embedding_size", "size of the character embedding"),
                       ("batch_size", "sequences trained in parallel"),
                       ("seq_len", "characters per sequence (BPTT length)")):
        g.add_argument("--" + name.replace("_", "-"), type=positive_int,
                       help=f"{text} (default: {DEFAULTS[name]})")
    g.add_argument("--drop-rate", type=drop_rate_value, help="dropout after "
                   f"each layer (default: {DEFAULTS['drop_rate']})")
    g.add_argument("--precision", choices=PRECISION_NAMES, help="dtype "
                   "policy of the products; weights and loss stay float32. "
                   "auto: mixed_bfloat16 on a CPU with AMX or AVX512-BF16, "
                   "mixed_float16 on a GPU with tensor cores, else float32; "
                   "with --restore, the run's own unless given (default: "
                   f"{DEFAULTS['precision']})")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", choices=OPTIMIZER_NAMES,
                   help=f"(default: {DEFAULTS['optimizer']})")
    own = ", ".join(f"{name} {rate}" for name, rate
                    in utils.DEFAULT_LEARNING_RATES.items())
    g.add_argument("--learning-rate", type=positive_float, help="default: "
                   f"the optimizer's own: {own}; with --restore, replaces "
                   "the saved one")
    g.add_argument("--clip-norm", type=non_negative_float, help="clip each "
                   "gradient to this norm, 0 = no clipping (default: "
                   f"{DEFAULTS['clip_norm']})")
    g.add_argument("--num-epochs", type=positive_int, help="epochs to train "
                   f"in this call (default: {DEFAULTS['num_epochs']})")
    g.add_argument("--patience", type=positive_int, help="stop after this "
                   "many epochs without val_loss improving by --min-delta "
                   f"(default: {DEFAULTS['patience']})")
    g.add_argument("--min-delta", type=non_negative_float, help="(default: "
                   f"{DEFAULTS['min_delta']})")
    g.add_argument("--random-seed", type=seed_value, help="seed for weights and "
                   "dropout (default: drawn at random and saved in "
                   "settings.json)")
    g = p.add_argument_group("output")
    g.add_argument("--checkpoint-dir", required=True, help="run folder: "
                   "checkpoint, settings, vocabulary, TensorBoard logs")
    g.add_argument("--restore", action="store_true", help="continue the run "
                   "in --checkpoint-dir from its best checkpoint")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    # The help strings state the defaults; argparse's own would say "None".
    p.formatter_class = argparse.HelpFormatter
    return p


def tf_message(e):
    """First line of a TensorFlow error, with a hint for the usual cause."""
    name = type(e).__name__
    first = (str(e).strip().splitlines() or [name])[0][:200]
    if name == "ResourceExhaustedError":
        return (f"out of memory ({first}): lower --rnn-size, --batch-size or "
                "--num-layers")
    return (f"{name}: {first}; if the loss was climbing, lower "
            "--learning-rate")


def text_paths(data_dir, args):
    """train.txt and validate.txt of --data-dir; a restored run without
    --data-dir reads the files it was trained on."""
    if data_dir is None and args.restore:
        saved = os.path.join(args.checkpoint_dir, SETTINGS_FILE)
        if os.path.isfile(saved):
            settings = read_run_file(args.checkpoint_dir, SETTINGS_FILE)
            return settings["train_text_path"], settings["val_text_path"]
    data_dir = data_dir or DEFAULTS["data_dir"]
    return (os.path.join(data_dir, "train.txt"),
            os.path.join(data_dir, "validate.txt"))


def main(argv=None):
    args = create_parser().parse_args(argv)
    utils.set_verbosity(0 if args.quiet else 1)
    params = {k: v for k, v in vars(args).items() if k != "quiet"}
    params["command_line"] = [sys.argv[0]] + list(
        sys.argv[1:] if argv is None else argv)
    data_dir = params.pop("data_dir")
    try:
        _, _, val_loss, _ = train(params, *text_paths(data_dir, args))
    except (ValueError, LossDiverged) as e:
        sys.exit(f"error: {e}")
    except (MemoryError, RecursionError) as e:
        sys.exit(f"error: the model does not fit ({type(e).__name__}): "
                 "lower --num-layers, --rnn-size or --batch-size")
    except KeyboardInterrupt:
        kept = utils.find_checkpoint(params["checkpoint_dir"] or ".")
        print("interrupted: " + ("the best checkpoint so far is kept; "
                                 "continue with --restore" if kept else
                                 "no checkpoint was written yet"),
              file=sys.stderr)
        return 130
    except OSError as e:
        sys.exit(f"error: {e.filename or ''}: {e.strerror or e}; check the "
                 "folder's space and permissions")
    except Exception as e:  # TensorFlow's own errors, raised from fit()
        if type(e).__module__.startswith("tensorflow"):
            sys.exit(f"error: TensorFlow stopped training: {tf_message(e)}")
        raise
    # The result: the best checkpoint, for scripts to pick up.
    print(utils.find_checkpoint(params["checkpoint_dir"])[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
