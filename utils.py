"""Shared pieces of the toolkit: vocabulary, encoding, the lazy batch
generator, atomic file writes and the stderr logger.

Text files are read as UTF-8 with CRLF and lone CR turned into LF; a file with
invalid UTF-8 is refused with the byte offset of the first bad byte. Nothing
here imports TensorFlow, so the scripts can check their input before it loads.

    from utils import scan_text, build_vocabulary, io_batch_generator
    stats = scan_text("data/fortunes-split/train.txt")
    vocab = build_vocabulary("fixed", stats.char_counts)
    batches = io_batch_generator("data/fortunes-split/train.txt", 128, 32,
                                 64 * 2**20, vocab, stats)
"""

import argparse
import codecs
import glob
import json
import os
import re
import string
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

# TensorFlow's start-up notices would bury the toolkit's own lines on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

UNKNOWN_ID = 0
# The tutorial's fixed table: printable ASCII without \x0b \x0c \r. A fixed
# table lets a base model be fine-tuned on anyone's text.
FIXED_CHARS = [c for c in string.printable if c not in "\x0b\x0c\r"]
VOCAB_KINDS = ("fixed", "corpus")
# Keras 3 defaults are 0.01 for SGD and 0.001 for the rest; the tutorial's
# Keras 2 code used 0.01 for Adagrad and 1.0 for Adadelta, which barely moves
# at 0.001.
DEFAULT_LEARNING_RATES = {"sgd": 0.01, "rmsprop": 0.001, "adagrad": 0.01,
                          "adadelta": 1.0, "adam": 0.001}
VOCAB_FILE = "vocab.json"
SCAN_CHUNK_CHARS = 1 << 20
CHECKPOINT_PATTERN = re.compile(r"model-epoch(\d+)-val([0-9.]+)\.keras$")
# Accounting for max_bytes_in_ram: a decoded char (up to 4 bytes in a str),
# its UTF-32 copy (4) and its int32 id (4).
BYTES_PER_CHAR_IN_RAM = 12


# ---------------------------------------------------------------- logging --

_verbosity = 1


def set_verbosity(level):
    """0 silences log(); 1 (default) shows it. Results never go through log."""
    global _verbosity
    _verbosity = level


def log(*args, end="\n"):
    """Print a diagnostic line to stderr unless verbosity is 0."""
    if _verbosity > 0:
        print(*args, file=sys.stderr, end=end, flush=True)


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single 'error: ...' line (exit 2),
    like every other error of the toolkit."""

    def error(self, message):
        self.exit(2, f"error: {message}\n")


def clock(seconds):
    """Seconds as H:MM:SS, for elapsed times and ETAs."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ------------------------------------------------------------ atomic files --

def atomic_write_bytes(path, data):
    """Write data to path so that a kill at any moment leaves either the old
    file or the new one, never a partial one (temp file, fsync, rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-",
                               suffix=os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False)
                      + "\n")


def fsync_file_and_replace(tmp, path):
    """Make an already written temp file durable, then rename it over path."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------- vocabulary --

class Vocabulary:
    """An id for each character; id 0 stands for every unknown character.

    chars[i] is the character of id i; chars[0] is "" (unknown). Encoding
    goes through a lookup table indexed by code point, so a whole text is
    encoded with a few numpy operations.
    """

    def __init__(self, chars, kind):
        if chars[UNKNOWN_ID] != "":
            raise ValueError("vocabulary: id 0 must be the unknown marker")
        self.chars = list(chars)
        self.kind = kind
        code_points = [ord(c) for c in self.chars[1:]]
        self._table = np.zeros(max(code_points, default=0) + 1, np.int32)
        self._table[code_points] = np.arange(1, len(self.chars))
        # Unknown ids decode to U+FFFD so a decoded text never loses length.
        self._decode = np.array(["\ufffd"] + self.chars[1:])

    @property
    def size(self):
        return len(self.chars)

    def to_json(self):
        return {"kind": self.kind, "unknown_id": UNKNOWN_ID,
                "chars": self.chars}

    @classmethod
    def from_json(cls, obj):
        return cls(obj["chars"], obj["kind"])

    def count_unknown(self, char_counts):
        """How many characters of a scanned text this vocabulary lacks."""
        return sum(n for c, n in char_counts.items()
                   if c >= len(self._table) or self._table[c] == 0)


def build_vocabulary(kind, char_counts=None, max_size=256):
    """The fixed ASCII table, or the max_size - 1 most frequent characters of
    a text (char_counts maps code point -> count, from scan_text)."""
    if kind == "fixed":
        return Vocabulary([""] + FIXED_CHARS, "fixed")
    if kind != "corpus":
        raise ValueError(f"vocabulary kind {kind!r}: use one of "
                         f"{', '.join(VOCAB_KINDS)}")
    if max_size < 2:
        raise ValueError(f"max vocabulary size {max_size}: must be >= 2")
    by_count = sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = sorted(cp for cp, _ in by_count[:max_size - 1])
    return Vocabulary([""] + [chr(cp) for cp in kept], "corpus")


def save_vocabulary(folder, vocab):
    atomic_write_json(os.path.join(folder, VOCAB_FILE), vocab.to_json())


def load_vocabulary(folder):
    return Vocabulary.from_json(read_json(os.path.join(folder, VOCAB_FILE)))


def normalize_newlines(text):
    return text.replace("\r\n", "\n").replace("\r", "\n")


def code_points(text):
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def encode_text(text, vocab):
    """ids (int32, shape (len(text),)) of text; unknown characters get 0."""
    cp = code_points(normalize_newlines(text))
    table = vocab._table
    inside = cp < len(table)
    return np.where(inside, table[np.where(inside, cp, 0)], UNKNOWN_ID
                    ).astype(np.int32)


def decode_text(ids, vocab):
    return "".join(vocab._decode[np.asarray(ids, dtype=np.int64)].tolist())


def one_hot_encode(ids, vocab_size):
    """float32 array of shape ids.shape + (vocab_size,)."""
    ids = np.asarray(ids)
    return np.eye(vocab_size, dtype=np.float32)[ids]


# ------------------------------------------------------------ text files --

@dataclass
class TextStats:
    """What one cheap pass over a text file learns.

    num_chars counts characters after newline normalisation; char_counts maps
    code point -> count; index holds (char_position, tell_cookie) pairs every
    SCAN_CHUNK_CHARS characters so a reader can seek close to any position.
    """
    path: str
    num_chars: int
    char_counts: dict = field(repr=False)
    index: list = field(repr=False)


def open_text(path):
    # newline=None turns CRLF and lone CR into LF, across read boundaries too.
    return open(path, encoding="utf-8", errors="strict", newline=None)


def scan_text(path):
    """Count the characters of a UTF-8 file in one pass, with bounded memory.

    Raises ValueError naming the byte offset of the first invalid byte.
    """
    counts = np.zeros(0x110000, dtype=np.int64)
    index, num_chars = [], 0
    try:
        with open_text(path) as f:
            while True:
                cookie = f.tell()
                chunk = f.read(SCAN_CHUNK_CHARS)
                if not chunk:
                    break
                index.append((num_chars, cookie))
                num_chars += len(chunk)
                counts += np.bincount(code_points(chunk), minlength=len(counts))
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: invalid UTF-8 at byte {find_invalid_utf8(path):,}; "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    nonzero = np.flatnonzero(counts)
    char_counts = dict(zip(nonzero.tolist(), counts[nonzero].tolist()))
    return TextStats(path, num_chars, char_counts, index)


def find_invalid_utf8(path, chunk_bytes=1 << 20):
    """Byte offset of the first byte of path that is not valid UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk_bytes)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                return offset - pending + e.start
            if not data:
                return offset
            offset += len(data)


def steps_per_epoch(num_chars, batch_size, seq_len):
    """Batches in one epoch: every batch needs batch_size * seq_len inputs
    plus, once, the target of the last one."""
    return max(0, (num_chars - 1) // (batch_size * seq_len))


def min_chars_needed(batch_size, seq_len):
    return batch_size * seq_len + 1


def check_text_fits(stats, batch_size, seq_len, name="text"):
    """Raise ValueError when a file is too short for one batch."""
    need = min_chars_needed(batch_size, seq_len)
    if stats.num_chars < need:
        raise ValueError(
            f"{name} {stats.path} has {stats.num_chars:,} characters; "
            f"--batch-size {batch_size} x --seq-len {seq_len} needs at least "
            f"{need:,}: lower --batch-size or --seq-len, or add text")


# ------------------------------------------------------ checkpoint names --

def checkpoint_name(epoch, val_loss):
    return f"model-epoch{epoch:03d}-val{val_loss:.4f}.keras"


def find_checkpoint(folder):
    """(path, epoch, val_loss) of the best checkpoint in folder, or None."""
    best = None
    for path in glob.glob(os.path.join(folder, "model-epoch*-val*.keras")):
        m = CHECKPOINT_PATTERN.search(os.path.basename(path))
        if m:
            found = (path, int(m.group(1)), float(m.group(2)))
            if best is None or found[2] < best[2]:
                best = found
    return best


# --------------------------------------------------------- batch generator --

def _seek_to(f, stats, position):
    """Position text file f at character `position` using the scan index."""
    i = max(k for k, (pos, _) in enumerate(stats.index) if pos <= position)
    start, cookie = stats.index[i]
    f.seek(cookie)
    remaining = position - start
    while remaining:
        remaining -= len(f.read(min(remaining, SCAN_CHUNK_CHARS)))
    return f.tell()


def io_batch_generator(text_path, batch_size, seq_len, max_bytes_in_ram,
                       vocab, stats=None, num_epochs=None):
    """Yield (x, y, epoch) batches read lazily from a UTF-8 text file.

    The usable text (the first steps * batch_size * seq_len + 1 characters,
    steps = steps_per_epoch(...)) is cut into batch_size equal rows; batch k
    holds characters [k * seq_len, (k + 1) * seq_len) of every row, so row r
    of each batch continues row r of the one before, across chunk
    boundaries, which is what a stateful LSTM needs. y is x shifted by one
    character. x and y are int32 arrays of shape (batch_size, seq_len);
    epoch counts from 0. The caller resets the LSTM states when epoch
    changes. At most max_bytes_in_ram bytes of text are held at once (as
    counted by BYTES_PER_CHAR_IN_RAM), whatever the file size. Runs forever
    unless num_epochs is given.
    """
    if stats is None:
        stats = scan_text(text_path)
    check_text_fits(stats, batch_size, seq_len)
    steps = steps_per_epoch(stats.num_chars, batch_size, seq_len)
    row_len = steps * seq_len
    chunk_steps = max(1, max_bytes_in_ram
                      // (batch_size * seq_len * BYTES_PER_CHAR_IN_RAM))
    with open_text(text_path) as f:
        row_starts = [_seek_to(f, stats, r * row_len)
                      for r in range(batch_size)]
        epoch = 0
        while num_epochs is None or epoch < num_epochs:
            cookies = list(row_starts)
            carry = None  # last character of each row, the next chunk's x[0]
            for first in range(0, steps, chunk_steps):
                n_steps = min(chunk_steps, steps - first)
                ids, carry, cookies = _read_chunk(
                    f, cookies, carry, n_steps * seq_len, vocab)
                for k in range(n_steps):
                    window = ids[:, k * seq_len:(k + 1) * seq_len + 1]
                    yield (np.ascontiguousarray(window[:, :-1]),
                           np.ascontiguousarray(window[:, 1:]), epoch)
            epoch += 1


def _read_chunk(f, cookies, carry, n_chars, vocab):
    """Read the next n_chars of every row; returns ids of shape
    (batch, n_chars + 1) that start with each row's carried character."""
    rows = []
    new_cookies = []
    for cookie in cookies:
        f.seek(cookie)
        # The first chunk of an epoch also reads its row's opening character.
        text = f.read(n_chars + (carry is None))
        new_cookies.append(f.tell())
        rows.append(encode_text(text, vocab))
    ids = np.stack(rows)  # (batch, n_chars [+1])
    if carry is not None:
        ids = np.concatenate([carry[:, None], ids], axis=1)
    if ids.shape[1] != n_chars + 1:
        raise RuntimeError(f"{f.name} changed while it was being read")
    return ids, ids[:, -1].copy(), new_cookies
