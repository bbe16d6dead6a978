"""Generate text from a run folder written by train.py.

Reads the best checkpoint of --checkpoint-dir (or the .keras file given),
its settings.json and vocab.json; builds a stateful copy of the network that
takes one character at a time for --num-samples streams at once, feeds it
the priming text and then each sampled character, and prints the samples.
Only the generated text goes to stdout, in UTF-8; the prime, the seed and
the speed go to stderr.

    python generate.py --checkpoint-dir checkpoints/base
    python generate.py --checkpoint-dir checkpoints/base --num-samples 64 \\
        --stop-at-newline --temperature 0.8 --random-seed 7 > tweets.txt
    python generate.py --checkpoint-dir checkpoints/base \\
        --prime-file data/fortunes-split/validate.txt --top-n 5

Without --prime-text or --prime-file each stream first reads its own
random slice of the run's validation text (settings.json's val_text_path),
cut to end at a line end: training resets the LSTM states only once an
epoch, so a zero state is foreign to the network and samples started from
one tend to open with runs of capitals or symbols. When that file cannot be
read, sampling starts from a newline and a warning says so. Samples are
separated by a newline with --stop-at-newline (one sample per line, without
its final newline) and by a blank line otherwise. Prime characters missing
from the vocabulary are fed as the unknown id, as training encodes them,
after a warning that lists them. Bad flag values exit with status 2, bad
files or checkpoints with status 1, each with one 'error: ' line.
"""

import argparse
import contextlib
import math
import os
import sys
import time
import warnings

import numpy as np

import utils
from train import SETTINGS_FILE
from utils import log

# NOTE: TensorFlow is imported only once the flags, the run folder and the
# prime have been checked, so bad input fails in a fraction of a second.

DEFAULTS = {
    "length": 280, "num_samples": 1, "temperature": 1.0, "top_n": 0,
    "prime_length": 32, "stop_at_newline": False, "random_seed": None,
}
DEFAULT_PRIME = "\n"
# A char-RNN loses the thread within a few hundred characters, and one
# batch of streams is all that runs at once: above these caps a run only
# risks running out of memory (ids alone take 4 bytes a character).
MAX_LENGTH = 10_000
MAX_NUM_SAMPLES = 10_000
MAX_SEED = 2**32 - 1
# Characters of validation text fed to each stream when no prime is given.
# On a 512-unit fortunes model, 40 samples at temperature 0.5 had 22-24
# all-capital openings and 4 with tabs from a cold newline, 0 and 0-2 after
# 16-32 characters, 0-1 and 0 from 64 on; 256 leaves a margin.
WARM_UP_LENGTH = 256
# Bytes read past a random position to find the next line end; a
# position farther than this from one is dropped and another drawn.
MAX_LINE_BYTES = 1 << 13
WARM_UP_TRIES = 100
ARCHITECTURE_KEYS = ("num_layers", "rnn_size", "embedding_size",
                     "drop_rate")


# ----------------------------------------------------------------- checks --

def whole(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value,
                                                                  bool)


def real(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(
        value, bool)


# name: (argparse conversion, test of a value, what to give instead)
RULES = {
    "length": (int, lambda v: whole(v) and 1 <= v <= MAX_LENGTH,
               f"give a whole number from 1 to {MAX_LENGTH:,}"),
    "num_samples": (int, lambda v: whole(v) and 1 <= v <= MAX_NUM_SAMPLES,
                    f"give a whole number from 1 to {MAX_NUM_SAMPLES:,} "
                    "(run again with other seeds for more)"),
    "temperature": (float, lambda v: real(v) and 0 < v < math.inf,
                    "must be > 0 and finite (small values approach greedy "
                    "argmax)"),
    "top_n": (int, lambda v: whole(v) and v >= 0,
              "give 0 (off) or a positive whole number"),
    "prime_length": (int, lambda v: whole(v) and v >= 1,
                     "give a positive whole number"),
    "random_seed": (int, lambda v: whole(v) and 0 <= v <= MAX_SEED,
                    f"give a whole number from 0 to 2**32 - 1 ({MAX_SEED})"),
    "prime_text": (str, lambda v: isinstance(v, str) and v != "",
                   "give some text, or leave the flag out to warm up on the "
                   "run's validation text"),
}


def problem(name, value):
    """What is wrong with value for the flag `name`, or None."""
    _, valid, advice = RULES[name]
    shown = repr(value) if isinstance(value, str) else value
    return None if valid(value) else f"{shown}: {advice}"


def check_value(name, value):
    """Raise ValueError naming the flag when value breaks its rule."""
    found = problem(name, value)
    if found:
        raise ValueError(f"--{name.replace('_', '-')} {found}")


def flag_type(name):
    """The argparse type of flag `name`: a value breaking its rule is an
    argparse error (one line naming the flag, exit 2)."""
    convert = RULES[name][0]

    def parse(text):
        value = convert(text)  # ValueError: argparse's 'invalid int value'
        found = problem(name, value)
        if found:
            raise argparse.ArgumentTypeError(found)
        return value

    parse.__name__ = convert.__name__
    return parse


def check_options(length, num_samples, temperature, top_n):
    """Raise ValueError on a value generate() cannot use."""
    for name, value in (("length", length), ("num_samples", num_samples),
                        ("temperature", temperature), ("top_n", top_n)):
        check_value(name, value)


def check_prime(prime_text, num_samples):
    """prime_text is one text for every stream or a list of num_samples
    texts of the same length; raise ValueError otherwise."""
    if isinstance(prime_text, str):
        return check_value("prime_text", prime_text)
    if len(prime_text) != num_samples:
        raise ValueError(f"{len(prime_text)} primes for {num_samples} "
                         "streams: give one text per stream")
    for text in prime_text:
        check_value("prime_text", text)
    lengths = {len(utils.normalize_newlines(text)) for text in prime_text}
    if len(lengths) > 1:
        raise ValueError(f"per-stream primes of lengths {sorted(lengths)}: "
                         "they must all be the same length (one batch)")


def resolve_seed(random_seed):
    """The seed to use; a drawn one is logged so the run can be repeated."""
    if random_seed is None:
        random_seed = int(np.random.SeedSequence().generate_state(1)[0]
                          >> 1)
        log(f"random seed: {random_seed} (pass --random-seed "
            f"{random_seed} to repeat this run)")
    check_value("random_seed", random_seed)
    return random_seed


# -------------------------------------------------------------- run folder --

def find_run(checkpoint):
    """(checkpoint_path, settings, vocab) for a run folder or a .keras file
    inside one; raises ValueError when any of them is missing or unreadable.
    Needs no TensorFlow."""
    if os.path.isdir(checkpoint):
        found = utils.find_checkpoint(checkpoint)
        if found is None:
            raise ValueError(
                f"{checkpoint} holds no checkpoint "
                "(model-epochNNN-valX.XXXX.keras): train into it with "
                "train.py, or pass the path of a .keras file")
        path, folder = found[0], checkpoint
    elif os.path.isfile(checkpoint):
        path, folder = checkpoint, os.path.dirname(checkpoint) or "."
    else:
        raise ValueError(f"checkpoint {checkpoint} not found: pass a run "
                         "folder written by train.py or its .keras file")
    return path, read_settings(folder), read_vocabulary(folder)


def read_settings(folder):
    path = os.path.join(folder, SETTINGS_FILE)
    try:
        settings = utils.read_json(path)
        missing = [k for k in ARCHITECTURE_KEYS if k not in settings]
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"cannot read {path} ({one_line(e)}): the "
                         "checkpoint must sit in the run folder train.py "
                         "wrote") from None
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it was not "
                         "written by this toolkit's train.py")
    return settings


def read_vocabulary(folder):
    try:
        return utils.load_vocabulary(folder)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"cannot read {os.path.join(folder, utils.VOCAB_FILE)} "
            f"({one_line(e)}): the checkpoint must sit in the run folder "
            "train.py wrote") from None


def one_line(error):
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[0][:200]


@contextlib.contextmanager
def native_stderr_silenced(silence=True):
    """Point file descriptor 2 at /dev/null while TensorFlow loads: its C++
    start-up notices ignore TF_CPP_MIN_LOG_LEVEL and sys.stderr."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_network(path, vocab, quiet=False):
    """The trained Keras model in path, checked against the vocabulary and
    for non-finite weights. Raises ValueError."""
    with native_stderr_silenced(quiet):
        import model  # registers any custom layer the checkpoint names
    # load_checkpoint's ValueError already names the file and the fix.
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        net = model.load_checkpoint(path)
    if net.output_shape[-1] != vocab.size:
        raise ValueError(f"checkpoint {path} predicts {net.output_shape[-1]}"
                         f" symbols but its vocab.json has {vocab.size}: "
                         "the run folder was mixed up; retrain")
    for layer in net.layers:
        if not all(np.isfinite(w).all() for w in layer.get_weights()):
            raise ValueError(f"checkpoint {path}: layer {layer.name} has "
                             "non-finite weights (NaN or inf); use an "
                             "earlier checkpoint or retrain")
    return net


def load_run(checkpoint, quiet=False):
    """(net, vocab, settings) for a run folder or .keras file."""
    path, settings, vocab = find_run(checkpoint)
    net = load_network(path, vocab, quiet)
    log(f"checkpoint: {path}")
    return net, vocab, settings


# ------------------------------------------------------------------ prime --

def read_prime_file(path, prime_length, rng):
    """A random slice of prime_length characters of a UTF-8 file."""
    if os.path.isdir(path):
        raise ValueError(f"prime file {path} is a folder: pass a text file "
                         "to --prime-file")
    if not os.path.isfile(path):
        raise ValueError(f"prime file {path} not found: pass an existing "
                         "text file to --prime-file")
    try:
        num_chars = utils.scan_text(path).num_chars
        if num_chars < prime_length:
            raise ValueError(
                f"prime file {path} has {num_chars:,} characters, fewer "
                f"than --prime-length {prime_length}: lower --prime-length "
                "or use a longer file")
        start = int(rng.integers(0, num_chars - prime_length + 1))
        with utils.open_text(path) as f:
            skipped = 0
            while skipped < start:
                skipped += len(f.read(min(start - skipped,
                                          utils.SCAN_CHUNK_CHARS)))
            return f.read(prime_length)
    except OSError as e:
        raise ValueError(f"cannot read prime file {path} ({one_line(e)})"
                         ) from None


def encode_prime(prime_text, vocab):
    """ids (int32, (len,)) of the prime; unknown characters become id 0
    after a warning that lists them."""
    ids = utils.encode_text(prime_text, vocab)
    text = utils.normalize_newlines(prime_text)
    unknown = sorted({c for c, i in zip(text, ids) if i == utils.UNKNOWN_ID})
    if unknown:
        log(f"warning: {len(unknown)} prime character(s) are not in the "
            f"vocabulary and are fed as unknown: "
            f"{' '.join(repr(c) for c in unknown)}")
    return ids


def read_warm_up(path, num_streams, length, rng):
    """num_streams random slices of `length` characters of the UTF-8 file
    at path (newlines normalised), each ending just after a newline so that
    every sample starts a fresh line. Reads a few kilobytes per slice,
    whatever the file's size. Raises ValueError saying why no slice could
    be cut (unreadable, empty, or no such stretch found)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                raise ValueError(f"{path} is empty")
            return [slice_to_line_end(f, size, length, rng)
                    for _ in range(num_streams)]
    except OSError as e:
        raise ValueError(f"cannot read {path} ({one_line(e)})") from None


def slice_to_line_end(f, size, length, rng):
    """The `length` characters that end at the first newline after a
    random byte of the binary file f."""
    before = 4 * length + 4  # UTF-8 takes at most 4 bytes a character
    for _ in range(WARM_UP_TRIES):
        at = int(rng.integers(0, size))
        start = max(0, at - before)
        f.seek(start)
        raw = f.read(at - start + MAX_LINE_BYTES)
        end = raw.find(b"\n", at - start)
        # A newline byte never sits inside a multi-byte UTF-8 character, but
        # `start` may: skip its continuation bytes (0b10xxxxxx).
        first = 0
        while first < end and raw[first] & 0xC0 == 0x80:
            first += 1
        text = utils.normalize_newlines(
            raw[first:end + 1].decode("utf-8", "replace"))
        if end >= 0 and len(text) >= length:
            return text[-length:]
    raise ValueError(f"no {length}-character stretch ending at a line end "
                     f"found in {WARM_UP_TRIES} tries")


def warm_up_prime(settings, num_streams, random_seed):
    """One validation-text slice per stream (read_warm_up) from the file
    settings["val_text_path"] names; DEFAULT_PRIME, after a warning, when
    that is missing or unusable."""
    path = settings.get("val_text_path")
    rng = np.random.default_rng([random_seed, 2])
    try:
        if not path:
            raise ValueError("settings name no val_text_path")
        primes = read_warm_up(path, num_streams, WARM_UP_LENGTH, rng)
    except ValueError as e:
        log(f"warning: cannot warm up on the run's validation text ({e}); "
            "samples start from a cold (zero) state and may open with junk:"
            " pass --prime-file with text like the training data")
        return DEFAULT_PRIME
    log(f"prime: a {WARM_UP_LENGTH}-character slice of {path} per stream, "
        "ending at a line end")
    return primes


# --------------------------------------------------------------- sampling --

def sample_ids(log_probs, temperature, top_n, rng):
    """One id per row of log_probs (float64, (batch, vocab_size)), never
    the unknown id. top_n 1 is argmax; temperature -> 0 approaches it."""
    log_probs = np.array(log_probs, dtype=np.float64)  # (batch, vocab)
    log_probs[:, utils.UNKNOWN_ID] = -np.inf
    # NOTE: a row whose every known symbol underflowed to probability 0 is
    # sampled uniformly rather than emitting the unknown id.
    dead = ~np.isfinite(log_probs.max(axis=1))
    log_probs[dead, 1:] = 0.0
    if top_n == 1:
        return np.argmax(log_probs, axis=1)
    if 1 < top_n < log_probs.shape[1]:
        cut = np.argpartition(log_probs, -top_n, axis=1)[:, :-top_n]
        np.put_along_axis(log_probs, cut, -np.inf, axis=1)
    # Subtracting the maximum first keeps tiny temperatures free of inf-inf.
    best = log_probs.max(axis=1, keepdims=True)
    weights = np.exp((log_probs - best) / temperature)  # (batch, vocab)
    cdf = np.cumsum(weights, axis=1)
    # u in (0, 1]: with u = 0 a leading zero-weight id could be chosen.
    u = 1.0 - rng.random(len(cdf))
    return np.sum(cdf < u[:, None] * cdf[:, -1:], axis=1)


# -------------------------------------------------------- inference model --

def build_inference_model(net, settings, batch_size):
    """A stateful float32 copy of net taking (batch_size, 1) ids, with
    net's weights and zero states."""
    import keras
    import model

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = model.build_model(
            net.output_shape[-1], batch_size, 1,
            *(settings[k] for k in ARCHITECTURE_KEYS))
    finally:
        keras.config.set_dtype_policy(policy)
    try:
        copy.set_weights(net.get_weights())
    except ValueError as e:
        raise ValueError(f"the checkpoint's weights do not fit the network "
                         f"its settings.json describes ({one_line(e)})"
                         ) from None
    return copy


def make_step(inference_net):
    """step(ids) for a model from build_inference_model: feeds ids (int,
    (batch,)) and returns log-probabilities (float64, (batch, vocab_size))
    of the next character. Each call advances the model's LSTM states."""
    import tensorflow as tf

    batch_size = inference_net.inputs[0].shape[0]
    spec = tf.TensorSpec((batch_size, 1), tf.int32)
    # A concrete function skips tf.function's per-call argument binding,
    # which is most of the cost of one step for a single stream.
    call = tf.function(lambda ids: inference_net(ids, training=False))
    concrete = call.get_concrete_function(spec)

    def step(ids):
        x = tf.constant(np.reshape(ids, (batch_size, 1)), tf.int32)
        probs = concrete(x).numpy()[:, 0, :]  # (batch, vocab)
        with np.errstate(divide="ignore"):
            return np.log(probs.astype(np.float64))

    return step


# --------------------------------------------------------------- generate --

def generate(net, vocab, settings, prime_text=None,
             length=DEFAULTS["length"], num_samples=DEFAULTS["num_samples"],
             temperature=DEFAULTS["temperature"], top_n=DEFAULTS["top_n"],
             stop_at_newline=DEFAULTS["stop_at_newline"], random_seed=None):
    """Sample num_samples texts of up to length characters, as one batch.

    net: a trained model (from load_run or train.train); settings: dict with
    ARCHITECTURE_KEYS (settings.json or train()'s params). prime_text: one
    text for every stream, a list of num_samples texts of one length, or
    None: a WARM_UP_LENGTH slice of the run's validation text per stream
    (warm_up_prime), since training almost never shows the network a zero
    state. Every prime character is fed, then each sampled one. With
    stop_at_newline a sample ends before its first newline. random_seed
    None draws a seed and logs it. Returns a list of num_samples strings
    without the prime. Raises ValueError on bad options, a bad prime, or
    too little memory for the batch; net itself is untouched.
    """
    check_options(length, num_samples, temperature, top_n)
    random_seed = resolve_seed(random_seed)
    if prime_text is None:
        prime_text = warm_up_prime(settings, num_samples, random_seed)
    check_prime(prime_text, num_samples)
    if isinstance(prime_text, str):
        prime_text = [prime_text] * num_samples
    prime_ids = np.stack([encode_prime(text, vocab) for text in prime_text])
    rng = np.random.default_rng(random_seed)
    import tensorflow as tf

    try:
        return sample_batch(net, vocab, settings, prime_ids, length,
                            temperature, top_n, stop_at_newline, rng)
    except (MemoryError, tf.errors.ResourceExhaustedError):
        raise ValueError(out_of_memory(num_samples, length)) from None


def out_of_memory(num_samples, length):
    return (f"out of memory for {num_samples:,} sample(s) of {length:,} "
            "characters in one batch: lower --num-samples (run again with "
            "other seeds for more) or --length")


def sample_batch(net, vocab, settings, prime_ids, length, temperature,
                 top_n, stop_at_newline, rng):
    """generate()'s work, once its arguments are checked; prime_ids (int32,
    (batch, prime_len)) is fed to a fresh stateful copy of net."""
    num_samples = len(prime_ids)
    step = make_step(build_inference_model(net, settings, num_samples))
    started = time.perf_counter()

    # Prime: each stream reads its own row, all in one batch
    for t in range(prime_ids.shape[1]):
        log_probs = step(prime_ids[:, t])

    # Sample, one character of every stream per step
    newline = utils.encode_text("\n", vocab)[0]
    ids = np.zeros((num_samples, length), np.int32)  # (batch, length)
    ended = np.zeros(num_samples, bool)
    for t in range(length):
        ids[:, t] = sample_ids(log_probs, temperature, top_n, rng)
        ended |= ids[:, t] == newline
        if t + 1 == length or (stop_at_newline and ended.all()):
            break
        log_probs = step(ids[:, t])

    seconds = time.perf_counter() - started
    steps = prime_ids.shape[1] + t + 1
    log(f"{num_samples:,} sample(s): {steps:,} steps in {seconds:.2f} s, "
        f"{num_samples * steps / seconds:,.0f} characters/s")
    return [utils.decode_text(row[:sample_end(row, t + 1, newline,
                                              stop_at_newline)], vocab)
            for row in ids]


def sample_end(row, filled, newline, stop_at_newline):
    """How many of row's first `filled` ids belong to the sample."""
    if stop_at_newline and newline != utils.UNKNOWN_ID:
        hits = np.flatnonzero(row[:filled] == newline)
        if len(hits):
            return hits[0]
    return filled


# ------------------------------------------------------------ entry point --

def create_parser():
    p = utils.OneLineParser(description="Generate text from a trained run.")
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint-dir", required=True, metavar="PATH",
                   help="run folder written by train.py (its best "
                   "checkpoint is used), or the path of one of its .keras "
                   "files")
    g = p.add_argument_group("prime", "default: each stream reads its own "
                             f"{WARM_UP_LENGTH}-character slice of the "
                             "run's validation text, ending at a line end; "
                             "when settings.json's val_text_path cannot be "
                             "read, a newline, with a warning")
    prime = g.add_mutually_exclusive_group()
    prime.add_argument("--prime-text", metavar="TEXT",
                       type=flag_type("prime_text"), help="text fed to "
                       "the model before sampling (not printed)")
    prime.add_argument("--prime-file", metavar="PATH", help="feed a random "
                       "slice of this UTF-8 file (chosen with --random-seed)")
    g.add_argument("--prime-length", type=flag_type("prime_length"),
                   metavar="N", help="characters in the --prime-file slice "
                   f"(default: {DEFAULTS['prime_length']})")
    g = p.add_argument_group("sampling")
    g.add_argument("--length", type=flag_type("length"), metavar="N",
                   help=f"characters per sample, at most {MAX_LENGTH:,} "
                   f"(default: {DEFAULTS['length']})")
    g.add_argument("--num-samples", type=flag_type("num_samples"),
                   metavar="N", help="samples generated together as one "
                   f"batch, at most {MAX_NUM_SAMPLES:,} (default: "
                   f"{DEFAULTS['num_samples']})")
    g.add_argument("--temperature", type=flag_type("temperature"),
                   help="> 0; lower is more conservative, near 0 is greedy "
                   f"(default: {DEFAULTS['temperature']})")
    g.add_argument("--top-n", type=flag_type("top_n"), metavar="N",
                   help="sample among the n most likely characters only; 1 "
                   f"is greedy, 0 is off (default: {DEFAULTS['top_n']})")
    g.add_argument("--stop-at-newline", action="store_true", help="end "
                   "each sample at its first newline: one line per sample")
    g.add_argument("--random-seed", type=flag_type("random_seed"),
                   metavar="N", help="0 to 2**32 - 1; seed for sampling "
                   "and the prime slices (default: drawn and shown on "
                   "stderr)")
    g = p.add_argument_group("output")
    g.add_argument("--quiet", action="store_true", help="print nothing but "
                   "the samples and errors")
    return p


def resolve_args(args):
    """Fill defaults; argparse has checked every value already."""
    params = dict(vars(args))
    for name, value in DEFAULTS.items():
        if params.get(name) is None:
            params[name] = value
    return params


def read_prime(params):
    """The --prime-text or --prime-file text, or None (warm up)."""
    if params["prime_file"] is None:
        return params["prime_text"]
    # Its own stream, so the slice does not shift the samples' draws.
    rng = np.random.default_rng([params["random_seed"], 1])
    return read_prime_file(params["prime_file"], params["prime_length"], rng)


def write_samples(samples, stop_at_newline):
    """Samples to stdout in UTF-8 whatever the locale; a blank line between
    samples unless each is a single line."""
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(encoding="utf-8")
    separator = "\n" if stop_at_newline else "\n\n"
    sys.stdout.write(separator.join(samples) + "\n")
    sys.stdout.flush()


def main(argv=None):
    args = create_parser().parse_args(argv)
    utils.set_verbosity(0 if args.quiet else 1)
    try:
        params = resolve_args(args)
        params["random_seed"] = resolve_seed(params["random_seed"])
        prime_text = read_prime(params)
        path, settings, vocab = find_run(params["checkpoint_dir"])
        if prime_text is not None:
            log(f"prime: {prime_text!r}")
        log(f"vocabulary: {vocab.size:,} symbols ({vocab.kind})")
        net = load_network(path, vocab, args.quiet)
        log(f"checkpoint: {path}")
        samples = generate(
            net, vocab, settings, prime_text, params["length"],
            params["num_samples"], params["temperature"], params["top_n"],
            params["stop_at_newline"], params["random_seed"])
    except ValueError as e:
        # Not log(): --quiet silences chatter, never errors.
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    try:
        write_samples(samples, params["stop_at_newline"])
    except BrokenPipeError:
        # The reader (e.g. head) left early; say nothing more at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
