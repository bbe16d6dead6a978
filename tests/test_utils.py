"""Tests for utils.py: vocabulary, encoding, scanning and the batch
generator's continuity."""

import os

import numpy as np
import pytest

import utils

TEXTS = ["Hello World 123", "tabs\tand\nnewlines\n", "", "a",
         "MiXeD cAsE 0987 !?~", "emoji 😀 and é"]


def corpus_vocab(text, max_size=256):
    counts = {}
    for c in utils.normalize_newlines(text):
        counts[ord(c)] = counts.get(ord(c), 0) + 1
    return utils.build_vocabulary("corpus", counts, max_size)


def write(tmp_path, text, name="t.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


# ------------------------------------------------------------- vocabulary --

# The fixed table is printable ASCII minus \x0b \x0c \r, plus id 0: 98 ids.
def test_fixed_vocabulary_is_the_tutorial_table():
    vocab = utils.build_vocabulary("fixed")
    assert vocab.size == 98
    assert "\r" not in vocab.chars and "\x0b" not in vocab.chars
    assert vocab.chars[0] == "" and vocab.chars[1] == "0"


# Encode then decode gives the text back under a corpus vocabulary.
@pytest.mark.parametrize("text", TEXTS)
def test_corpus_vocabulary_round_trip(text):
    vocab = corpus_vocab(text + "x")
    ids = utils.encode_text(text, vocab)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert utils.decode_text(ids, vocab) == text


# Under the fixed table, ASCII round-trips and anything else becomes U+FFFD.
@pytest.mark.parametrize("text, expected", [
    ("Hello World 123", "Hello World 123"),
    ("tabs\tand\nnewlines\n", "tabs\tand\nnewlines\n"),
    ("emoji 😀 and é", "emoji \ufffd and \ufffd"),
    ("", ""),
])
def test_fixed_vocabulary_round_trip(text, expected):
    vocab = utils.build_vocabulary("fixed")
    assert utils.decode_text(utils.encode_text(text, vocab), vocab) == expected


# Worked by hand: "0" is the first printable, so id 1; "a" is id 11.
def test_encode_known_ids():
    vocab = utils.build_vocabulary("fixed")
    assert utils.encode_text("0a\n😀", vocab).tolist() == [
        1, 11, vocab.chars.index("\n"), 0]


# CRLF and lone CR both become one LF before encoding.
@pytest.mark.parametrize("text, expected", [
    ("a\r\nb", "a\nb"), ("a\rb", "a\nb"), ("a\r\r\nb", "a\n\nb"),
    ("\r", "\n")])
def test_newlines_normalised(text, expected):
    vocab = corpus_vocab("ab\n")
    assert utils.decode_text(utils.encode_text(text, vocab), vocab) == expected


# The size cap keeps the most frequent characters (ties by code point).
def test_corpus_vocabulary_cap():
    vocab = corpus_vocab("aaaabbbcc d", max_size=3)
    assert vocab.chars == ["", "a", "b"]
    counts = {ord(c): n for c, n in {"a": 4, "b": 3, "c": 2, " ": 1,
                                     "d": 1}.items()}
    assert vocab.count_unknown(counts) == 4


# A vocabulary survives the trip through vocab.json unchanged.
def test_vocabulary_saved_and_loaded(tmp_path):
    vocab = corpus_vocab("héllo 😀\n")
    utils.save_vocabulary(str(tmp_path), vocab)
    loaded = utils.load_vocabulary(str(tmp_path))
    assert loaded.chars == vocab.chars and loaded.kind == "corpus"


# One-hot rows have a single 1 at the id.
def test_one_hot_encode():
    out = utils.one_hot_encode(np.array([[0, 2], [1, 1]]), 3)
    assert out.shape == (2, 2, 3)
    assert out.argmax(-1).tolist() == [[0, 2], [1, 1]]
    assert out.sum() == 4


# ----------------------------------------------------------------- scanning --

# Characters are counted after newline normalisation, code points not bytes.
@pytest.mark.parametrize("text, num_chars", [
    ("", 0), ("abc", 3), ("a\r\nb", 3), ("a\rb\r", 4), ("😀é", 2)])
def test_scan_counts_characters(tmp_path, text, num_chars):
    stats = utils.scan_text(write(tmp_path, text))
    assert stats.num_chars == num_chars
    assert sum(stats.char_counts.values()) == num_chars


# Invalid UTF-8 is refused with the offset of the first bad byte.
@pytest.mark.parametrize("data, offset", [
    (b"\xff", 0), (b"abc\xffdef", 3), ("é😀".encode() + b"\x80", 6),
    (b"ok\xe2\x82", 2), (b"a" * 3000 + b"\xc3(", 3000)])
def test_scan_refuses_invalid_utf8(tmp_path, data, offset):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=f"invalid UTF-8 at byte {offset:,};"):
        utils.scan_text(str(path))


# A file too short for one batch is refused with both numbers and the flags.
def test_check_text_fits_message(tmp_path):
    stats = utils.scan_text(write(tmp_path, "x" * 50))
    with pytest.raises(ValueError, match=r"has 50 characters; --batch-size 4 "
                       r"x --seq-len 16 needs at least 65: lower"):
        utils.check_text_fits(stats, 4, 16)


# ------------------------------------------------------------ batch generator --

GENERATOR_CASES = [  # (batch_size, seq_len, max_bytes_in_ram, scan chunk)
    (4, 7, 1, 97), (3, 5, 3 * 5 * 12 * 2, 50), (5, 3, 5 * 3 * 12 * 7, 1000),
    (2, 11, 10**9, 64), (1, 1, 1, 13)]


def random_text(n, seed=0):
    rng = np.random.default_rng(seed)
    alphabet = list("abcdefgh ij\n\r\té😀") + ["\r\n"]
    return "".join(rng.choice(alphabet, n))


# Row r of batch k+1 continues row r of batch k, through chunk boundaries
# and across two epochs; the rows together cover all the usable text.
@pytest.mark.parametrize("batch_size, seq_len, max_bytes, scan_chunk",
                         GENERATOR_CASES)
def test_generator_continuity(tmp_path, monkeypatch, batch_size, seq_len,
                              max_bytes, scan_chunk):
    monkeypatch.setattr(utils, "SCAN_CHUNK_CHARS", scan_chunk)
    text = random_text(1500)
    path = write(tmp_path, text)
    ids = utils.encode_text(text, corpus_vocab(text))
    stats = utils.scan_text(path)
    steps = utils.steps_per_epoch(stats.num_chars, batch_size, seq_len)
    batches = list(utils.io_batch_generator(
        path, batch_size, seq_len, max_bytes, corpus_vocab(text), stats,
        num_epochs=2))

    assert len(batches) == 2 * steps
    assert [e for _, _, e in batches] == [0] * steps + [1] * steps
    for (x0, y0, _), (x1, _, _) in zip(batches[:steps - 1], batches[1:]):
        assert (x1[:, 0] == y0[:, -1]).all()
        assert (x0[:, 1:] == y0[:, :-1]).all()
    rows_x = np.concatenate([x for x, _, _ in batches[:steps]], axis=1)
    rows_y = np.concatenate([y for _, y, _ in batches[:steps]], axis=1)
    used = batch_size * steps * seq_len
    assert (rows_x.reshape(-1) == ids[:used]).all()
    assert (rows_y.reshape(-1) == ids[1:used + 1]).all()
    for a, b in zip(batches[:steps], batches[steps:]):
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


# Every character the vocabulary knows appears in one epoch's batches, save
# the tail shorter than one batch, which the promised step count excludes.
def test_generator_uses_whole_text(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(26 * 40)) + "\n"
    path = write(tmp_path, text)
    vocab = corpus_vocab(text)
    stats = utils.scan_text(path)
    batches = list(utils.io_batch_generator(path, 4, 5, 1, vocab, stats,
                                            num_epochs=1))
    assert len(batches) == (len(text) - 1) // 20 == 52
    seen = np.concatenate([x.reshape(-1) for x, _, _ in batches])
    assert set(utils.decode_text(seen, vocab)) == set(text) - {"\n"}
    assert len(seen) == len(text) - 1


# No chunk read holds more text than max_bytes_in_ram allows (one batch at
# least, so a tiny budget still makes progress).
@pytest.mark.parametrize("max_bytes", [1, 2000, 5000, 40000])
def test_generator_memory_bound(tmp_path, monkeypatch, max_bytes):
    path = write(tmp_path, random_text(20000))
    sizes = []
    real = utils._read_chunk

    def spy(f, cookies, carry, n_chars, vocab):
        sizes.append(len(cookies) * n_chars)
        return real(f, cookies, carry, n_chars, vocab)

    monkeypatch.setattr(utils, "_read_chunk", spy)
    list(utils.io_batch_generator(path, 8, 10, max_bytes,
                                  utils.build_vocabulary("fixed"),
                                  num_epochs=1))
    budget = max(max_bytes // utils.BYTES_PER_CHAR_IN_RAM, 8 * 10)
    assert max(sizes) <= budget
    assert len(sizes) > 1 or max_bytes >= 20000 * utils.BYTES_PER_CHAR_IN_RAM


# ------------------------------------------------------------ atomic files --

# An atomic write replaces the file whole and leaves no temp file behind;
# a write that fails leaves the old file as it was.
def test_atomic_write(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    utils.atomic_write_json(str(path), {"a": 1})
    assert utils.read_json(str(path)) == {"a": 1}

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        utils.atomic_write_json(str(path), {"a": 2})
    assert utils.read_json(str(path)) == {"a": 1}
    assert os.listdir(tmp_path) == ["state.json"]


# Checkpoint names sort out the best one by val_loss.
def test_find_checkpoint(tmp_path):
    assert utils.find_checkpoint(str(tmp_path)) is None
    for epoch, val in ((1, 2.5), (3, 1.25), (4, 1.5)):
        (tmp_path / utils.checkpoint_name(epoch, val)).write_bytes(b"")
    (tmp_path / ".partial-model-epoch005-val0.1000.keras").write_bytes(b"")
    path, epoch, val = utils.find_checkpoint(str(tmp_path))
    assert (os.path.basename(path), epoch, val) == (
        "model-epoch003-val1.2500.keras", 3, 1.25)
