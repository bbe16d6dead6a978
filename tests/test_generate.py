"""Tests for generate.py: sampling rules, the one-character step against the
training model, determinism, the CLI's output streams and its errors."""

import io
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

# Lets a bare `pytest` (not only `python -m pytest`) import the scripts.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import generate  # noqa: E402
import utils  # noqa: E402

SENTENCES = [
    "The kettle clicked off and nobody moved to pour the tea.",
    "Rain again, so the dog stares at the door like it owes him money. 🙂",
    "A good map leaves out almost everything.",
    "She wrote the shopping list on the back of an old concert ticket.",
    "Coffee first, opinions later ☕",
    "We missed the last bus and walked home under the orange lights.",
    "If the plan needs a miracle, it is not a plan yet.",
    "Finally finished the puzzle, one piece short, of course 🎉",
    "The library smells like dust, glue and somebody's lunch.",
    "Every bug I fix today was written by me last spring.",
    "Quiet trains are the best place to think about nothing.",
    "My plant survived the winter, which makes one of us 🙂",
]
SEQ_LEN, BATCH_SIZE = 16, 4
UNSEEN = "€"  # not in the corpus, so not in its vocabulary


# -----------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A tiny corpus-vocabulary run trained for one epoch."""
    import train

    data = tmp_path_factory.mktemp("data")
    rows = random.Random(0)
    for name, n in (("train.txt", 120), ("validate.txt", 24)):
        lines = [rows.choice(SENTENCES) for _ in range(n)]
        (data / name).write_text("\n".join(lines) + "\n", "utf-8")
    folder = tmp_path_factory.mktemp("run")
    params = {"checkpoint_dir": str(folder), "rnn_size": 24,
              "embedding_size": 8, "batch_size": BATCH_SIZE,
              "seq_len": SEQ_LEN, "num_epochs": 1, "vocab": "corpus",
              "random_seed": 1}
    train.train(params, str(data / "train.txt"), str(data / "validate.txt"))
    return folder


@pytest.fixture(scope="session")
def run(run_dir):
    """(net, vocab, settings) of the tiny run."""
    return generate.load_run(str(run_dir))


@pytest.fixture(autouse=True)
def verbose_again():
    # main(["--quiet"]) sets the shared logger's verbosity for the process.
    yield
    utils.set_verbosity(1)


def run_main(argv, capsys):
    try:
        code = generate.main([str(arg) for arg in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def copy_run(run_dir, folder):
    """A new run folder holding run_dir's settings and vocabulary only."""
    folder.mkdir()
    for name in ("settings.json", "vocab.json"):
        shutil.copy(run_dir / name, folder / name)
    return folder


def forward_probs(net, ids):
    """Probabilities (batch, seq_len, vocab) of one pass of the training
    model over ids (batch, seq_len), from zero states."""
    import model

    model.reset_states(net)
    probs = np.asarray(net(np.asarray(ids, np.int32), training=False))
    model.reset_states(net)
    return probs

# -----------------------------------------------------------------------------
# sampling rules (no model)


with np.errstate(divide="ignore"):
    LOG_PROBS = np.log(np.array([[0.05, 0.10, 0.60, 0.25],
                                 [0.70, 0.05, 0.05, 0.20],
                                 [0.00, 0.45, 0.00, 0.55]]))


# Greedy settings pick the most likely known id of every row, whatever the
# seed.
@pytest.mark.parametrize("temperature, top_n", [
    (1.0, 1), (5.0, 1), (1e-9, 0), (1e-300, 0), (1e-9, 3),
])
def test_greedy_settings_give_argmax(temperature, top_n):
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ids = generate.sample_ids(LOG_PROBS, temperature, top_n, rng)
        assert ids.tolist() == [2, 3, 3]


# The unknown id (0) is never drawn, even when it is the likeliest, and
# zero-probability ids never appear.
def test_unknown_and_impossible_ids_never_drawn():
    rng = np.random.default_rng(0)
    rows = np.repeat(LOG_PROBS, 5000, axis=0)
    ids = generate.sample_ids(rows, 3.0, 0, rng).reshape(3, 5000)
    assert 0 not in ids
    assert set(ids[2].tolist()) == {1, 3}


class EdgeRng:
    """Stands in for a Generator whose uniform draws sit at the edges."""

    def __init__(self, value):
        self.value = value

    def random(self, n):
        return np.full(n, self.value)


# Uniform draws at either end of [0, 1) still land on a possible known id.
@pytest.mark.parametrize("draw, expected", [
    (0.0, [3, 3, 3]), (1.0 - 2**-53, [1, 1, 1]),
])
def test_edge_draws_land_on_possible_ids(draw, expected):
    ids = generate.sample_ids(LOG_PROBS, 1.0, 0, EdgeRng(draw))
    assert ids.tolist() == expected


# A row whose known ids all underflowed still yields a known id.
def test_row_with_only_unknown_mass_yields_known_id():
    log_probs = np.array([[0.0, -np.inf, -np.inf]])
    ids = generate.sample_ids(log_probs, 1.0, 0, np.random.default_rng(0))
    assert ids[0] in (1, 2)


# Draw frequencies follow softmax(log_probs / temperature) over the top-n
# known ids: row 0 with top-n 2 keeps ids 2 and 3 in the ratio 0.6 : 0.25.
@pytest.mark.parametrize("temperature, top_n, expected", [
    (1.0, 0, [0, 0.10 / 0.95, 0.60 / 0.95, 0.25 / 0.95]),
    (1.0, 2, [0, 0, 0.60 / 0.85, 0.25 / 0.85]),
    (0.5, 0, np.array([0, 0.01, 0.36, 0.0625]) / 0.4325),
])
def test_draw_frequencies(temperature, top_n, expected):
    rng = np.random.default_rng(1)
    rows = np.repeat(LOG_PROBS[:1], 40000, axis=0)
    ids = generate.sample_ids(rows, temperature, top_n, rng)
    freq = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(freq, expected, atol=0.01)

# -----------------------------------------------------------------------------
# the step against the training model


# Feeding characters one at a time through the stateful batch copy gives the
# probabilities of one forward pass of the training model, row by row.
def test_step_matches_training_forward_pass(run):
    net, vocab, settings = run
    text = "".join(SENTENCES)
    rows = [text[k * 40:k * 40 + SEQ_LEN] for k in range(BATCH_SIZE)]
    ids = np.stack([utils.encode_text(r, vocab) for r in rows])
    expected = forward_probs(net, ids)  # (batch, seq_len, vocab)

    step = generate.make_step(
        generate.build_inference_model(net, settings, BATCH_SIZE))
    stepped = np.stack([np.exp(step(ids[:, t])) for t in range(SEQ_LEN)],
                       axis=1)
    assert stepped.dtype == np.float64
    np.testing.assert_allclose(stepped, expected, rtol=1e-4, atol=1e-6)


# Greedy sampling (top-n 1, or a vanishing temperature) equals decoding the
# argmax of the training model's forward pass over the growing text.
@pytest.mark.parametrize("options", [
    {"top_n": 1}, {"temperature": 1e-12}, {"top_n": 1, "random_seed": 99},
])
def test_greedy_generation_matches_forward_pass(run, options):
    net, vocab, settings = run
    ids = list(utils.encode_text("The ", vocab))
    for _ in range(SEQ_LEN - len(ids)):
        x = np.zeros((BATCH_SIZE, SEQ_LEN), np.int32)
        x[0, :len(ids)] = ids
        probs = forward_probs(net, x)[0, len(ids) - 1]
        ids.append(int(np.argmax(probs[1:])) + 1)
    expected = utils.decode_text(ids[4:], vocab)

    options = {"random_seed": 0, **options}
    samples = generate.generate(net, vocab, settings, "The ",
                                length=SEQ_LEN - 4, num_samples=2, **options)
    assert samples == [expected, expected]

# -----------------------------------------------------------------------------
# generate()


# The same seed repeats every sample exactly; another seed does not.
def test_seed_repeats_samples(run):
    def sample(seed):
        return generate.generate(*run, "The ", length=40, num_samples=3,
                                 random_seed=seed)

    first = sample(5)
    assert len(first) == 3 and all(len(s) == 40 for s in first)
    assert sample(5) == first
    assert sample(6) != first


# With stop_at_newline each sample is one line: no newline, at most length
# characters, and the batch stops stepping once every stream has ended.
def test_stop_at_newline_gives_single_lines(run, monkeypatch):
    calls = []
    make_step = generate.make_step

    def counting_make_step(inference_net):
        step = make_step(inference_net)
        return lambda ids: calls.append(1) or step(ids)

    monkeypatch.setattr(generate, "make_step", counting_make_step)
    samples = generate.generate(*run, length=1000, num_samples=8,
                                stop_at_newline=True, random_seed=3)
    assert len(samples) == 8
    assert all("\n" not in s and len(s) <= 1000 for s in samples)
    # A step per warm-up character, then one per character of the longest
    # line.
    assert len(calls) == (generate.WARM_UP_LENGTH
                          + max(len(s) for s in samples))


# An emoji the corpus vocabulary holds is fed as itself, silently; a
# character it lacks is fed as unknown after a warning naming it.
@pytest.mark.parametrize("prime, warned", [
    ("🙂", False), ("Coffee ☕ ", False), (f"price {UNSEEN}5", True),
])
def test_prime_outside_vocabulary_warns(run, capsys, prime, warned):
    net, vocab, settings = run
    ids = generate.encode_prime(prime, vocab)
    assert (0 in ids) == warned
    samples = generate.generate(net, vocab, settings, prime, length=10,
                                random_seed=0)
    assert len(samples[0]) == 10
    err = capsys.readouterr().err
    assert ("warning:" in err and repr(UNSEEN) in err) == warned


# Bad arguments to the importable function raise ValueError naming them.
@pytest.mark.parametrize("options, named", [
    ({"length": 0}, "--length 0"), ({"num_samples": -2}, "--num-samples"),
    ({"length": 10_001}, "--length 10001: give a whole number from 1 to "
     "10,000"),
    ({"num_samples": 10_001}, "--num-samples 10001"),
    ({"length": 2.5}, "--length 2.5"), ({"num_samples": True}, "--num-s"),
    ({"temperature": 0.0}, "--temperature"), ({"top_n": -1}, "--top-n"),
    ({"prime_text": ""}, "--prime-text"),
    ({"random_seed": -1}, r"--random-seed -1: .* 0 to 2\*\*32 - 1"),
    ({"random_seed": 2**32}, "--random-seed 4294967296"),
    ({"prime_text": ["ab"], "num_samples": 2}, "1 primes for 2 streams"),
    ({"prime_text": ["ab", "abc"], "num_samples": 2}, r"lengths \[2, 3\]"),
])
def test_generate_refuses_bad_options(run, options, named):
    with pytest.raises(ValueError, match=named):
        generate.generate(*run, **options)


# A prime-file slice is a seeded, exact-length substring of the file.
def test_prime_file_slice_is_seeded_substring(tmp_path):
    path = tmp_path / "prime.txt"
    text = "".join(SENTENCES)
    path.write_text(text, "utf-8")

    def slice_of(seed):
        return generate.read_prime_file(str(path), 20,
                                        np.random.default_rng(seed))

    first = slice_of(0)
    assert len(first) == 20 and first in text
    assert slice_of(0) == first
    assert len({slice_of(seed) for seed in range(10)}) > 1


# Every warm-up slice is `length` characters of the file ending at a line
# end: with 8-character lines and length 12, one of the 19 stretches
# text[e - 12:e] at a line end e >= 16; each stream gets its own, seeded.
def test_warm_up_slices_end_at_line_ends(tmp_path):
    path = tmp_path / "val.txt"
    text = "".join(f"line {k:02d}\n" for k in range(20))
    path.write_text(text, "utf-8")
    allowed = {text[end - 12:end] for end in range(16, 161, 8)}

    def slices(seed):
        return generate.read_warm_up(str(path), 30, 12,
                                     np.random.default_rng(seed))

    first = slices(0)
    assert len(allowed) == 19 and set(first) <= allowed
    assert len(set(first)) > 5
    assert slices(0) == first and slices(1) != first


# Only one stretch qualifies here, so it is always that one: CRLF and lone
# CR become newlines first, multi-byte characters count as one, and a line
# longer than MAX_LINE_BYTES is reached from its last few kilobytes.
@pytest.mark.parametrize("raw, expected", [
    ("héllo\nwörld\n", "héllo\nwörld\n"),
    ("héllo\r\nwörld\r\n", "héllo\nwörld\n"),
    ("héllo\rwörld\r\n", "héllo\nwörld\n"),
    ("é" * 9000 + "\n", "é" * 11 + "\n"),
])
def test_warm_up_slice_is_the_only_stretch(tmp_path, raw, expected):
    path = tmp_path / "val.txt"
    path.write_bytes(raw.encode("utf-8"))
    rng = np.random.default_rng(0)
    assert generate.read_warm_up(str(path), 4, 12, rng) == [expected] * 4


# A file that cannot give a slice is refused with the reason.
@pytest.mark.parametrize("content, reason", [
    (None, "cannot read"), ("", "is empty"),
    ("a" * 100, "no 12-character stretch"),
    ("short\n", "no 12-character stretch"),
])
def test_warm_up_refuses_unusable_file(tmp_path, content, reason):
    path = tmp_path / "val.txt"
    if content is not None:
        path.write_text(content, "utf-8")
    with pytest.raises(ValueError, match=reason):
        generate.read_warm_up(str(path), 2, 12, np.random.default_rng(0))


# Without a prime, generate() feeds each stream its own validation slice
# (the seed's [seed, 2] stream picks them), not the cold newline.
def test_no_prime_warms_up_on_validation_text(run, capsys):
    net, vocab, settings = run
    rng = np.random.default_rng([7, 2])
    primes = generate.read_warm_up(settings["val_text_path"], 3,
                                   generate.WARM_UP_LENGTH, rng)
    val_text = Path(settings["val_text_path"]).read_text("utf-8")
    assert all(p in val_text and p.endswith("\n") for p in primes)

    def sample(prime):
        return generate.generate(*run, prime, length=30, num_samples=3,
                                 random_seed=7)

    warm = sample(None)
    assert warm == sample(primes) != sample("\n")
    assert "warning" not in capsys.readouterr().err


# With no readable validation text the samples start from a newline, after
# one warning that says so and suggests --prime-file.
@pytest.mark.parametrize("val_text_path", [None, "missing.txt", "empty"])
def test_warm_up_falls_back_to_newline(run, tmp_path, capsys,
                                       val_text_path):
    net, vocab, settings = run
    settings = dict(settings)
    del settings["val_text_path"]
    if val_text_path == "empty":
        (tmp_path / "empty").write_text("", "utf-8")
    if val_text_path:
        settings["val_text_path"] = str(tmp_path / val_text_path)
    options = {"length": 20, "num_samples": 2, "random_seed": 5}
    cold = generate.generate(net, vocab, settings, **options)
    err = capsys.readouterr().err
    assert cold == generate.generate(net, vocab, settings, "\n", **options)
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "cold (zero) state" in err and "--prime-file" in err


# Per-stream primes are fed per stream in one batch: after the primes, the
# batch's next-character probabilities equal each prime's run alone.
def test_per_stream_primes_match_single_runs(run, monkeypatch):
    primes = ["The kettle ", "Coffee firs", "A good map "]
    first_draws = []
    sample_ids = generate.sample_ids

    def recording(log_probs, *args):
        first_draws.append(np.exp(log_probs))
        return sample_ids(log_probs, *args)

    monkeypatch.setattr(generate, "sample_ids", recording)
    generate.generate(*run, primes, length=1, num_samples=3, random_seed=0)
    for p in primes:
        generate.generate(*run, p, length=1, random_seed=0)
    together, alone = first_draws[0], np.concatenate(first_draws[1:])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6)
    assert np.abs(alone[0] - alone[1]).max() > 1e-3

# -----------------------------------------------------------------------------
# command line


# stdout holds the samples alone, one per line with --stop-at-newline;
# everything else is on stderr, and --quiet empties stderr.
@pytest.mark.parametrize("quiet", [False, True])
def test_cli_writes_only_samples_to_stdout(run_dir, run, capsys, quiet):
    argv = ["--checkpoint-dir", run_dir, "--num-samples", 3, "--length", 60,
            "--stop-at-newline", "--random-seed", 4] + ["--quiet"] * quiet
    code, out, err = run_main(argv, capsys)
    assert code == 0
    expected = generate.generate(*run, length=60,
                                 num_samples=3, stop_at_newline=True,
                                 random_seed=4)
    assert out == "\n".join(expected) + "\n"
    assert "checkpoint:" not in out
    assert (err == "") == quiet
    assert quiet or "checkpoint:" in err


# The folder and the path of its .keras file give the same samples; without
# --stop-at-newline samples are separated by a blank line.
def test_cli_accepts_folder_or_checkpoint_file(run_dir, capsys):
    checkpoint = utils.find_checkpoint(str(run_dir))[0]
    outs = []
    for target in (run_dir, checkpoint):
        code, out, _ = run_main(["--checkpoint-dir", target, "--length", 12,
                                 "--num-samples", 2, "--random-seed", 8,
                                 "--quiet"], capsys)
        assert code == 0
        outs.append(out)
    assert outs[0] == outs[1]
    first, second = outs[0][:-1].split("\n\n")
    assert len(first) == len(second) == 12


# Samples reach stdout as UTF-8 even when the console's encoding is ASCII.
def test_samples_written_as_utf8_whatever_the_locale(monkeypatch):
    raw = io.BytesIO()
    ascii_stdout = io.TextIOWrapper(raw, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_stdout)
    generate.write_samples(["Coffee ☕", "done 🙂"], stop_at_newline=True)
    assert raw.getvalue().decode("utf-8") == "Coffee ☕\ndone 🙂\n"


@pytest.fixture(scope="session")
def broken_runs(run_dir, tmp_path_factory):
    """Run folders that look right but hold a bad checkpoint."""
    import model

    base = tmp_path_factory.mktemp("broken")
    name = utils.checkpoint_name(1, 1.0)
    corrupt = copy_run(run_dir, base / "corrupt")
    (corrupt / name).write_bytes(b"PK\x03\x04 not a zip archive")
    nan = copy_run(run_dir, base / "nan")
    net = model.load_checkpoint(utils.find_checkpoint(str(run_dir))[0])
    weights = net.get_weights()
    weights[1][0, 0] = np.nan
    net.set_weights(weights)
    net.save(str(nan / name))
    bare = base / "bare"
    bare.mkdir()
    shutil.copy(corrupt / name, bare / name)
    short = base / "short.txt"
    short.write_text("tiny", "utf-8")
    return {"corrupt": corrupt, "nan_weights": nan, "bare": bare,
            "short": short, "empty": base, "missing": base / "missing"}


# Each bad input ends in one 'error: ...' line naming the problem, no
# traceback and nothing on stdout; a bad flag value is an argparse error
# (exit 2, as in train.py), a bad file or checkpoint exits 1.
@pytest.mark.parametrize("target, extra, code, named", [
    ("missing", [], 1, "not found"),
    ("empty", [], 1, "holds no checkpoint"),
    ("bare", [], 1, "settings.json"),
    ("corrupt", [], 1, "cannot load checkpoint"),
    ("nan_weights", [], 1, "non-finite"),
    ("run", ["--prime-file", "short"], 1, "fewer than --prime-length 32"),
    ("run", ["--prime-file", "missing"], 1, "prime file"),
    ("run", ["--prime-file", "empty"], 1, "is a folder: pass a text file"),
    ("run", ["--prime-text", ""], 2, "argument --prime-text: '': give"),
    ("run", ["--length", "0"], 2, "argument --length: 0: give a whole "
     "number from 1 to 10,000"),
    ("run", ["--length", "-5"], 2, "argument --length: -5:"),
    ("run", ["--length", "10001"], 2, "argument --length: 10001:"),
    ("run", ["--length", "ten"], 2, "--length: invalid int value: 'ten'"),
    ("run", ["--num-samples", "0"], 2, "argument --num-samples: 0:"),
    ("run", ["--num-samples", "1000000000"], 2, "--num-samples: "
     "1000000000: give a whole number from 1 to 10,000"),
    ("run", ["--temperature", "0"], 2, "argument --temperature: 0.0:"),
    ("run", ["--temperature", "-1"], 2, "argument --temperature: -1.0:"),
    ("run", ["--temperature", "nan"], 2, "argument --temperature: nan:"),
    ("run", ["--top-n", "-1"], 2, "argument --top-n: -1:"),
    ("run", ["--random-seed", "-1"], 2, "argument --random-seed: -1: give "
     "a whole number from 0 to 2**32 - 1 (4294967295)"),
    ("run", ["--random-seed", str(2**32)], 2, "--random-seed: 4294967296:"),
    ("run", ["--prime-length", "0", "--prime-file", "x"], 2,
     "argument --prime-length: 0:"),
    ("run", ["--prime-text", "a", "--prime-file", "short"], 2,
     "not allowed"),
])
def test_cli_bad_input_is_one_line(run_dir, broken_runs, capsys, target,
                                   extra, code, named):
    paths = {**broken_runs, "run": run_dir}
    extra = [str(paths.get(arg, arg)) for arg in extra]
    got, out, err = run_main(["--checkpoint-dir", paths[target], "--quiet",
                              *extra], capsys)
    assert got == code
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert named in err and "Traceback" not in err


# A checkpoint that does not load gives model.load_checkpoint's own message,
# whole and unwrapped.
@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip archive"])
def test_cli_passes_checkpoint_error_through(run_dir, tmp_path, capsys,
                                             content):
    import model

    folder = copy_run(run_dir, tmp_path / "run")
    path = folder / utils.checkpoint_name(1, 1.0)
    path.write_bytes(content)
    with pytest.raises(ValueError) as raised:
        model.load_checkpoint(str(path))
    code, out, err = run_main(["--checkpoint-dir", folder, "--quiet"],
                              capsys)
    assert (code, out, err) == (1, "", f"error: {raised.value}\n")


# Running out of memory (TensorFlow's or numpy's) is one error line that
# says what to lower, not a traceback.
@pytest.mark.parametrize("error", ["tensorflow", "numpy"])
def test_cli_out_of_memory_is_one_line(run_dir, monkeypatch, capsys, error):
    import tensorflow as tf

    def exhausted(inference_net):
        if error == "numpy":
            raise MemoryError()
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when "
                                               "allocating tensor")

    monkeypatch.setattr(generate, "make_step", exhausted)
    code, out, err = run_main(["--checkpoint-dir", run_dir, "--quiet",
                               "--num-samples", 3, "--length", 12], capsys)
    assert (code, out) == (1, "")
    assert err == ("error: out of memory for 3 sample(s) of 12 characters "
                   "in one batch: lower --num-samples (run again with other "
                   "seeds for more) or --length\n")
