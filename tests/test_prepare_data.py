"""Tests for prepare_data.py: reading, cleaning, splitting, writing, CLI."""

import collections
import re
import sys
from pathlib import Path

import pytest

# Lets a bare `pytest` (not only `python -m pytest`) import the script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import prepare_data  # noqa: E402

# -----------------------------------------------------------------------------
# helpers


def write_input(tmp_path, data, file_name="corpus.txt"):
    path = tmp_path / file_name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def numbered(n):
    return "".join(f"sample {i}\n" for i in range(n))


def read_parts(folder, parts=prepare_data.SPLIT_PARTS):
    return {part: (folder / f"{part}.txt").read_text("utf-8").splitlines()
            for part in parts}


def folder_bytes(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def run_main(argv, capsys):
    try:
        code = prepare_data.main([str(arg) for arg in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """The bundled corpus split with defaults: (folder, samples, stats)."""
    out_dir = tmp_path_factory.mktemp("bundled")
    prepare_data.prepare(out_dir=out_dir)
    samples, stats = prepare_data.read_bundled_samples(
        prepare_data.find_bundled_corpus())
    return out_dir / "fortunes-split", samples, stats

# -----------------------------------------------------------------------------
# bundled corpus


# The installed fortune package is found and gives >10k one-line epigrams.
def test_bundled_corpus_gives_one_line_epigrams(bundled):
    folder, _, _ = bundled
    lines = sum(read_parts(folder).values(), [])
    assert len(lines) > 10_000
    assert all(line.strip() == line and line for line in lines)
    assert "%" not in lines
    assert not any("\t" in line for line in lines)


# ASCII art and the licence are left out, epigrams about art are kept, and
# no epigram appears twice.
def test_bundled_corpus_skips_pictures_only(bundled):
    _, samples, stats = bundled
    skipped = stats["skipped"]
    assert skipped["ascii-art"] == "mostly pictures"
    assert "LICENSE" in skipped
    assert "art" not in skipped
    assert len(set(samples)) == len(samples)


# A file counts as pictures when most entries are mostly not letters.
@pytest.mark.parametrize("epigrams, expected", [
    (["A celebrity is known for his well-knownness."], False),
    (["( o.o ) > ^ <", "/\\_/\\ (=^.^=)"], True),
    (["( o.o ) > ^ <", "Mostly words here.", "Words again."], False),
])
def test_looks_like_pictures(epigrams, expected):
    assert prepare_data.looks_like_pictures(epigrams) == expected


# Train, validate and test partition the cleaned epigrams 80/10/10.
def test_bundled_split_is_a_partition(bundled):
    folder, samples, _ = bundled
    parts = read_parts(folder)
    n = len(samples)
    assert len(parts["train"]) == round(n * 0.8)
    assert len(parts["validate"]) == round(n * 0.1)
    assert len(parts["test"]) == n - round(n * 0.8) - round(n * 0.1)
    assert collections.Counter(sum(parts.values(), [])) == \
        collections.Counter(samples)

# -----------------------------------------------------------------------------
# splitting


# Sizes follow round(n * fraction) for train and validate (halves to even),
# test takes the rest; the parts are disjoint and cover the input.
@pytest.mark.parametrize("n, train_fraction, validate_fraction, expected", [
    (8, 0.8, 0.1, (6, 1, 1)),      # 6.4, 0.8
    (10, 0.8, 0.1, (8, 1, 1)),
    (19, 0.8, 0.1, (15, 2, 2)),    # 15.2, 1.9
    (25, 0.8, 0.1, (20, 2, 3)),    # 2.5 rounds to 2
    (100, 0.5, 0.25, (50, 25, 25)),
])
def test_split_sizes(tmp_path, n, train_fraction, validate_fraction,
                     expected):
    path = write_input(tmp_path, numbered(n))
    counts = prepare_data.prepare(
        path, train_fraction=train_fraction,
        validate_fraction=validate_fraction, out_dir=tmp_path / "out")
    parts = read_parts(tmp_path / "out" / "corpus-split")
    assert tuple(len(parts[p]) for p in prepare_data.SPLIT_PARTS) == expected
    assert tuple(counts[f"{p}.txt"][0] for p in parts) == expected
    assert sorted(sum(parts.values(), [])) == sorted(numbered(n).splitlines())


# The same seed gives identical bytes; another seed reorders the samples.
def test_seed_fixes_the_shuffle(tmp_path):
    path = write_input(tmp_path, numbered(200))
    for out, seed in (("a", 0), ("b", 0), ("c", 1)):
        prepare_data.prepare(path, random_seed=seed, out_dir=tmp_path / out)
    a, b, c = (tmp_path / out / "corpus-split" for out in "abc")
    assert folder_bytes(a) == folder_bytes(b)
    assert read_parts(a)["train"] != read_parts(c)["train"]
    assert sorted(sum(read_parts(a).values(), [])) == \
        sorted(sum(read_parts(c).values(), []))

# -----------------------------------------------------------------------------
# reading and cleaning


# Line ends of every kind split samples; tabs and other breaks become
# spaces; blank lines and a byte-order mark go; emoji pass unchanged.
@pytest.mark.parametrize("data, expected", [
    (b"a\r\nb\r\n", ["a", "b"]),
    (b"a\rb\rc", ["a", "b", "c"]),
    (b"a\r\n\r\nb\rc\n\n", ["a", "b", "c"]),
    (b"x\ty\t\n", ["x y"]),
    ("one\u2028two\x0bthree\n", ["one two three"]),
    (b"  \n\t\r\nkeep\n", ["keep"]),
    (b"\xef\xbb\xbfhead\nnext\n", ["head", "next"]),
    ("🙂 hi 👍🏽\n🇫🇷\n", ["🙂 hi 👍🏽", "🇫🇷"]),
    (b"", []),
])
def test_line_samples_are_cleaned(tmp_path, data, expected):
    path = write_input(tmp_path, data)
    assert prepare_data.read_line_samples(path) == expected


# Emoji are written to the split files byte for byte.
def test_emoji_survive_the_split(tmp_path):
    emoji = ["🙂 smile", "👍🏽 thumbs", "家族 👨‍👩‍👧"]
    path = write_input(tmp_path, "\n".join(emoji * 4) + "\n")
    prepare_data.prepare(path, out_dir=tmp_path)
    lines = sum(read_parts(tmp_path / "corpus-split").values(), [])
    assert sorted(lines) == sorted(emoji * 4)


# The chosen TSV column is taken; rows without it are skipped and counted.
@pytest.mark.parametrize("data, tsv_column, expected", [
    ("u1\tt1\thello world\t2010\nu2\tt2\tbye\t2010\n", 2,
     (["hello world", "bye"], 0, 2)),
    ("u1\tt1\thello\t2010\r\nu2\tt2\tbye\t2010\r\n", 0,
     (["u1", "u2"], 0, 2)),
    ("u1\tt1\thello\t2010\nu2\tt2\n\nu3\tt3\t\t2010\n", 2,
     (["hello"], 1, 3)),
    ("a\tb\tc\n", 2, (["c"], 0, 1)),
])
def test_tsv_column(tmp_path, data, tsv_column, expected):
    path = write_input(tmp_path, data, "tweets.tsv")
    assert prepare_data.read_tsv_samples(path, tsv_column) == expected


# Skipped TSV rows are reported in a warning before the summary.
def test_tsv_short_rows_warn(tmp_path, capsys):
    rows = "".join(f"u\tt\ttweet {i}\tdate\n" for i in range(20))
    path = write_input(tmp_path, rows + "short\trow\n", "tweets.tsv")
    prepare_data.prepare(path, format="tsv", out_dir=tmp_path)
    assert "warning: skipped 1 of 21 rows" in capsys.readouterr().err
    lines = sum(read_parts(tmp_path / "tweets-split").values(), [])
    assert sorted(lines) == sorted(f"tweet {i}" for i in range(20))

# -----------------------------------------------------------------------------
# subsets and output files


# Whole thousands and millions are written short, other counts in full.
@pytest.mark.parametrize("n, expected", [
    (80_000, "80k"), (20_000, "20k"), (1500, "1500"), (375, "375"),
    (1000, "1k"), (2_000_000, "2m"), (2_500_000, "2500k"), (7, "7"),
])
def test_compact_count(n, expected):
    assert prepare_data.compact_count(n) == expected


# Subset files hold the first N lines of train and N/4 (at least one) of
# validate; a short split gives what it has, named by the lines it holds,
# and a warning. 40 lines split 32/4/4; 5000 split 4000/500/500.
@pytest.mark.parametrize("n, subset_lines, expected, short", [
    (40, 8, {"train-8.txt": 8, "validate-2.txt": 2}, False),
    (40, 1, {"train-1.txt": 1, "validate-1.txt": 1}, False),
    (40, 32, {"train-32.txt": 32, "validate-4.txt": 4}, True),
    (40, 100, {"train-32.txt": 32, "validate-4.txt": 4}, True),
    (40, 10**20, {"train-32.txt": 32, "validate-4.txt": 4}, True),
    (5000, 4000, {"train-4k.txt": 4000, "validate-500.txt": 500}, True),
    (5000, 2000, {"train-2k.txt": 2000, "validate-500.txt": 500}, False),
])
def test_subset_files(tmp_path, capsys, n, subset_lines, expected, short):
    path = write_input(tmp_path, numbered(n))
    counts = prepare_data.prepare(path, subset_lines=subset_lines,
                                  out_dir=tmp_path)
    folder = tmp_path / "corpus-split"
    parts = read_parts(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["train.txt", "validate.txt", "test.txt", *expected])
    for name, n_lines in expected.items():
        lines = (folder / name).read_text("utf-8").splitlines()
        assert len(lines) == counts[name][0] == n_lines
        assert lines == parts[name.split("-")[0]][:n_lines]
    assert ("warning:" in capsys.readouterr().err) == short


# A huge --subset-lines is capped at the split's size: the files are named
# by the lines they hold, and the warning says how many were asked for.
def test_huge_subset_is_capped(tmp_path, capsys):
    path = write_input(tmp_path, numbered(40))
    code, _, err = run_main(["--input", path, "--out-dir", tmp_path,
                             "--subset-lines", "99999999999999999999"],
                            capsys)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "corpus-split").iterdir()) \
        == ["test.txt", "train-32.txt", "train.txt", "validate-4.txt",
            "validate.txt"]
    assert err.splitlines()[1:3] == [
        "warning: train-32.txt holds all 32 lines of train.txt, fewer than "
        "the 99,999,999,999,999,999,999 that --subset-lines "
        "99999999999999999999 asks for",
        "warning: validate-4.txt holds all 4 lines of validate.txt, fewer "
        "than the 24,999,999,999,999,999,999 that --subset-lines "
        "99999999999999999999 asks for"]


# --force after a split with subsets removes the old subset files it does
# not rewrite (they hold the old shuffle) and says which; other files stay.
@pytest.mark.parametrize("second, kept, removed", [
    ([], [], ["train-8.txt", "validate-2.txt"]),
    (["--subset-lines", "4"], ["train-4.txt", "validate-1.txt"],
     ["train-8.txt", "validate-2.txt"]),
    (["--subset-lines", "8"], ["train-8.txt", "validate-2.txt"], []),
])
def test_force_removes_stale_subsets(tmp_path, capsys, second, kept,
                                     removed):
    path = write_input(tmp_path, numbered(50))
    folder = tmp_path / "corpus-split"
    argv = ["--input", path, "--out-dir", tmp_path]
    assert run_main(argv + ["--subset-lines", "8"], capsys)[0] == 0
    (folder / "train-notes.txt").write_text("mine")
    code, _, err = run_main(argv + ["--random-seed", 5, "--force", *second],
                            capsys)
    assert code == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["train.txt", "validate.txt", "test.txt", "train-notes.txt", *kept])
    line = (f"removed {', '.join(removed)}: subset files of an earlier "
            "split that this one replaces")
    assert (line in err.splitlines()) == bool(removed)
    parts = read_parts(folder)
    for name in kept:
        lines = (folder / name).read_text().splitlines()
        assert lines == parts[name.split("-")[0]][:len(lines)]


# Without --force, subset files alone are enough to refuse, untouched.
def test_subset_files_alone_need_force(tmp_path, capsys):
    path = write_input(tmp_path, numbered(50))
    folder = tmp_path / "corpus-split"
    folder.mkdir()
    (folder / "train-1k.txt").write_text("old\n")
    code, out, err = run_main(["--input", path, "--out-dir", tmp_path],
                              capsys)
    assert (code, out) == (1, "")
    assert err == (f"error: '{folder}' already holds train-1k.txt; pass "
                   "--force to replace them or choose another --name\n")
    assert folder_bytes(folder) == {"train-1k.txt": b"old\n"}


# Counts are lines and characters (newlines included) of each file.
def test_counts_match_files(tmp_path):
    path = write_input(tmp_path, "é\n" * 10)
    counts = prepare_data.prepare(path, out_dir=tmp_path)
    assert counts == {"train.txt": (8, 16), "validate.txt": (1, 2),
                      "test.txt": (1, 2)}


# An existing split is refused and left byte for byte; --force replaces
# the files and leaves anything else in the folder alone.
def test_existing_split_needs_force(tmp_path, capsys):
    path = write_input(tmp_path, numbered(50))
    out_dir = tmp_path / "out"
    folder = out_dir / "corpus-split"
    argv = ["--input", path, "--out-dir", out_dir]
    assert run_main(argv, capsys)[0] == 0
    (folder / "notes.md").write_text("mine")
    before = folder_bytes(folder)

    code, out, err = run_main(argv + ["--random-seed", 1], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: ") and "--force" in err
    assert folder_bytes(folder) == before

    assert run_main(argv + ["--random-seed", 1, "--force"], capsys)[0] == 0
    after = folder_bytes(folder)
    assert after["train.txt"] != before["train.txt"]
    assert after["notes.md"] == b"mine"
    assert sorted(after) == sorted(before)


# stdout holds only the split folder, named after the input file.
def test_stdout_is_the_split_folder(tmp_path, capsys):
    path = write_input(tmp_path, numbered(20), "tweets.txt")
    code, out, err = run_main(["--input", path, "--out-dir", tmp_path],
                              capsys)
    assert code == 0
    assert out == f"{tmp_path / 'tweets-split'}\n"
    assert "read 20 samples" in err and "train.txt" in err


# The default output folder is data/ beside the script, not the cwd.
def test_default_out_dir_is_beside_the_script():
    expected = Path(prepare_data.__file__).resolve().parent / "data"
    assert prepare_data.create_parser().parse_args([]).out_dir == expected

# -----------------------------------------------------------------------------
# bad input


TSV = "u1\tt1\thello\t2010\nu2\tt2\tbye\t2010\n"


# Each bad input ends in one 'error:' line and a non-zero exit, no traceback.
@pytest.mark.parametrize("data, args, code, fragment", [
    (None, ["--input", "{tmp}/missing.txt"], 2, "does not exist"),
    (None, ["--input", "{tmp}"], 2, "not a file"),
    (b"", [], 1, "no samples"),
    (b"\n \r\n\t\n", [], 1, "no samples"),
    (b"a\nb\n", [], 1, "too few samples (2)"),
    (numbered(5), [], 1, "too few samples (5)"),
    (b"ok\n\xff\n", [], 1, "offset 3;"),
    (numbered(20), ["--subset-lines", "0"], 2, "--subset-lines 0"),
    (numbered(20), ["--subset-lines", "-5"], 2, "--subset-lines -5"),
    (numbered(20), ["--subset-lines", "many"], 2, "'many'"),
    (TSV, ["--format", "tsv", "--tsv-column", "4"], 1, "--tsv-column 4"),
    ("a\nb\n", ["--format", "tsv", "--tsv-column", "1"], 1,
     "rows have at most 1 column, counted from 0"),
    (TSV, ["--format", "tsv", "--tsv-column", "-1"], 2, "--tsv-column -1"),
    (None, ["--format", "tsv"], 2, "needs --input"),
    (numbered(20), ["--train-fraction", "0"], 2, "--train-fraction 0.0"),
    (numbered(20), ["--train-fraction", "1.5"], 2, "--train-fraction 1.5"),
    (numbered(20), ["--validate-fraction", "1"], 2, "--validate-fraction"),
    (numbered(20), ["--train-fraction", "0.9"], 2, "nothing for test"),
    (numbered(20), ["--name", "a/b"], 2, "--name 'a/b'"),
])
def test_bad_input_is_one_line(tmp_path, capsys, data, args, code, fragment):
    argv = [arg.format(tmp=tmp_path) for arg in args]
    if data is not None:
        argv += ["--input", write_input(tmp_path, data)]
    result = run_main(argv + ["--out-dir", tmp_path / "out"], capsys)
    assert result[:2] == (code, "")
    err = result[2]
    assert err.startswith("error: ") and err.count("\n") == 1
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# The importable prepare() raises ValueError quoting the bad value.
@pytest.mark.parametrize("kwargs, fragment", [
    ({"subset_lines": 0}, "--subset-lines 0"),
    ({"train_fraction": 0.95}, "--train-fraction 0.95"),
    ({"format": "tsv"}, "needs --input"),
    ({"format": "csv"}, "'csv'"),
    ({"input_path": "nowhere.txt"}, "'nowhere.txt'"),
])
def test_prepare_raises_value_error(tmp_path, kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        prepare_data.prepare(out_dir=tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


# The error names the file and the absolute offset of the first bad byte.
@pytest.mark.parametrize("data, offset", [
    (b"\xff", 0),
    (b"abc\ndef\n\xfe", 8),
    (b"caf\xc3\xa9\r\nna\xefve\n", 9),       # lead byte without its tail
    (b"ok\n\xe2\x82", 3),                   # cut off at end of file
    (b"\xef\xbb\xbfab\xff", 5),              # the byte-order mark counts
    (b"x" * 70_000 + b"\ny\x80", 70_002),
])
def test_invalid_utf8_offset(tmp_path, capsys, data, offset):
    path = write_input(tmp_path, data)
    code, _, err = run_main(["--input", path, "--out-dir", tmp_path], capsys)
    assert code == 1
    assert f"'{path}' is not valid UTF-8" in err
    assert f"offset {offset};" in err and "re-encode" in err
