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
    # One step for the prime, then one per character of the longest line.
    assert len(calls) == 1 + max(len(s) for s in samples) < 1000


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
    ({"temperature": 0.0}, "--temperature"), ({"top_n": -1}, "--top-n"),
    ({"prime_text": ""}, "--prime-text"),
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


# Each bad input ends in one 'error: ...' line naming the problem, a
# non-zero exit, no traceback and nothing on stdout.
@pytest.mark.parametrize("target, extra, named", [
    ("missing", [], "not found"),
    ("empty", [], "holds no checkpoint"),
    ("bare", [], "settings.json"),
    ("corrupt", [], "cannot load checkpoint"),
    ("nan_weights", [], "non-finite"),
    ("run", ["--prime-text", ""], "--prime-text is empty"),
    ("run", ["--length", "0"], "--length 0"),
    ("run", ["--length", "-5"], "--length -5"),
    ("run", ["--length", "ten"], "--length"),
    ("run", ["--num-samples", "0"], "--num-samples 0"),
    ("run", ["--temperature", "0"], "--temperature 0.0"),
    ("run", ["--temperature", "-1"], "--temperature -1.0"),
    ("run", ["--temperature", "nan"], "--temperature nan"),
    ("run", ["--top-n", "-1"], "--top-n -1"),
    ("run", ["--prime-length", "0", "--prime-file", "x"], "--prime-length"),
    ("run", ["--prime-file", "short"], "fewer than --prime-length 32"),
    ("run", ["--prime-file", "missing"], "prime file"),
    ("run", ["--prime-text", "a", "--prime-file", "short"], "not allowed"),
])
def test_cli_bad_input_is_one_line(run_dir, broken_runs, capsys, target,
                                   extra, named):
    paths = {**broken_runs, "run": run_dir}
    extra = [str(paths.get(arg, arg)) for arg in extra]
    code, out, err = run_main(["--checkpoint-dir", paths[target], "--quiet",
                               *extra], capsys)
    assert code not in (0, None)
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert named in err and "Traceback" not in err
