"""Tests for fast_lstm.py: FastLSTM computes what keras.layers.LSTM does
(outputs, gradients, states, weights, checkpoints), learns the same in a
short run, and train.py's --precision picks, records and changes it."""

import json
import random

import keras
import numpy as np
import pytest
import tensorflow as tf

import fast_lstm
import model
import train
import utils

# (batch, seq_len, input_dim, units, num_layers)
SHAPES = [(4, 5, 3, 6, 1), (2, 1, 7, 5, 1), (3, 9, 4, 8, 2)]
TINY = {"rnn_size": 24, "embedding_size": 8, "batch_size": 4,
        "seq_len": 12, "num_epochs": 1, "random_seed": 3,
        "vocab": "corpus"}


def stacks(shape, stateful=False, precision="float32"):
    """A keras.layers.LSTM stack and a FastLSTM stack with equal weights."""
    batch, seq_len, input_dim, units, num_layers = shape
    nets = []
    for layer in (keras.layers.LSTM, fast_lstm.FastLSTM):
        x = keras.Input(batch_shape=(batch, seq_len, input_dim))
        h = x
        for _ in range(num_layers):
            h = layer(units, return_sequences=True, stateful=stateful,
                      dtype=precision)(h)
        nets.append(keras.Model(x, h))
    nets[1].set_weights(nets[0].get_weights())
    return nets


def outputs_and_gradients(net, x, weights):
    """Outputs, and gradients of sum(outputs * weights) with respect to the
    input and every variable, in training mode."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.cast(net(x, training=True), tf.float32)
        loss = tf.reduce_sum(y * weights)
    grads = tape.gradient(loss, [x] + net.trainable_variables)
    return y.numpy(), [g.numpy() for g in grads]


def random_input(shape, seed=0):
    batch, seq_len, input_dim, units, _ = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, seq_len, input_dim)).astype(np.float32)
    w = rng.normal(size=(batch, seq_len, units)).astype(np.float32)
    return x, w


def corpus_files(folder, n_train=400, n_val=60):
    rows = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran"]
    for name, n in (("train.txt", n_train), ("validate.txt", n_val)):
        lines = [" ".join(rows.choice(words) for _ in range(6))
                 for _ in range(n)]
        (folder / name).write_text("\n".join(lines) + "\n", "utf-8")
    return str(folder / "train.txt"), str(folder / "validate.txt")


# -----------------------------------------------------------------------------
# the layer against keras.layers.LSTM


# In float32 the outputs and every gradient (input, kernel, recurrent
# kernel, bias of each layer) equal Keras' own to rounding.
@pytest.mark.parametrize("shape", SHAPES)
def test_float32_outputs_and_gradients_equal_keras(shape):
    reference, fast = stacks(shape)
    x, w = random_input(shape)
    y_ref, g_ref = outputs_and_gradients(reference, x, w)
    y_fast, g_fast = outputs_and_gradients(fast, x, w)
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-5, atol=1e-6)
    assert len(g_fast) == len(g_ref) == 1 + 3 * shape[-1]
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# Inference (training=False, a forward-only path) gives the same outputs.
@pytest.mark.parametrize("shape", SHAPES)
def test_float32_inference_equals_keras(shape):
    reference, fast = stacks(shape)
    x, _ = random_input(shape)
    np.testing.assert_allclose(fast(x, training=False),
                               reference(x, training=False),
                               rtol=1e-5, atol=1e-6)


# Stateful layers carry h and c from one call to the next exactly as Keras'
# do, and reset_state() (what model.reset_states calls) starts over.
@pytest.mark.parametrize("training", [True, False])
def test_stateful_carry_and_reset_match_keras(training):
    shape = (3, 4, 5, 6, 2)
    reference, fast = stacks(shape, stateful=True)
    first, second = random_input(shape, 1)[0], random_input(shape, 2)[0]
    for net in (reference, fast):
        net.calls = [net(first, training=training),
                     net(second, training=training)]
        model.reset_states(net)
        net.calls.append(net(first, training=training))
    for got, want in zip(fast.calls, reference.calls):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.calls[2], fast.calls[0])
    assert not np.allclose(fast.calls[1], fast.calls[0], atol=1e-3)


# Weights move both ways between the two layers: set_weights from Keras'
# layer, and Keras' layer set from ours, give the same outputs.
def test_weights_interchange_both_ways():
    shape = SHAPES[0]
    reference, fast = stacks(shape)
    x, _ = random_input(shape)
    fast.set_weights([w * 1.5 for w in fast.get_weights()])
    reference.set_weights(fast.get_weights())
    assert [v.path.split("/")[-1] for v in fast.weights] == [
        v.path.split("/")[-1] for v in reference.weights]
    np.testing.assert_allclose(fast(x), reference(x), rtol=1e-5, atol=1e-6)


# Under mixed_bfloat16 the products run in bfloat16 but the cell state and
# gate arithmetic stay float32: outputs and gradients stay within a few
# bfloat16 roundings of the float32 reference.
def test_bfloat16_stays_close_to_float32():
    shape = (8, 16, 12, 32, 1)
    reference, _ = stacks(shape)
    fast = stacks(shape, precision="mixed_bfloat16")[1]
    fast.set_weights(reference.get_weights())
    assert fast.layers[1].compute_dtype == "bfloat16"
    x, w = random_input(shape)
    y_ref, g_ref = outputs_and_gradients(reference, x, w)
    y_fast, g_fast = outputs_and_gradients(fast, x, w)
    assert np.abs(y_fast - y_ref).max() < 2e-2
    for a, b in zip(g_fast, g_ref):
        assert a.dtype == np.float32
        assert np.abs(a - b).max() < 3e-2 * np.abs(b).max()


# The fast path runs where it applies and steps aside (to Keras' own loop)
# for what it does not implement, which then still matches Keras.
@pytest.mark.parametrize("options, fast_path", [
    ({}, True),
    ({"go_backwards": True}, False),
    ({"dropout": 0.5}, False),
    ({"activation": "relu"}, False),
])
def test_fast_path_runs_only_where_it_applies(options, fast_path,
                                              monkeypatch):
    calls = []
    original = fast_lstm.lstm_training
    monkeypatch.setattr(fast_lstm, "lstm_training",
                        lambda *a: calls.append(1) or original(*a))
    layer = fast_lstm.FastLSTM(5, return_sequences=True, **options)
    twin = keras.layers.LSTM(5, return_sequences=True, **options)
    x = random_input((2, 3, 4, 5, 1))[0]
    layer(x)
    twin(x)
    twin.set_weights(layer.get_weights())
    y = layer(x, training=True)
    assert bool(calls) == fast_path
    if not options.get("dropout"):
        np.testing.assert_allclose(y, twin(x, training=True), rtol=1e-5,
                                   atol=1e-6)


# Where a GPU is present the layer hands over to keras.layers.LSTM's own
# inner loop, which is where Keras runs its cuDNN kernel.
def test_gpu_hands_over_to_keras_cudnn_path(monkeypatch):
    calls = []
    monkeypatch.setattr(fast_lstm, "lstm_training",
                        lambda *a: calls.append("fast"))
    monkeypatch.setattr(
        keras.layers.LSTM, "inner_loop",
        lambda self, *a, **k: calls.append("keras")
        or keras.layers.RNN.inner_loop(self, *a, **k))
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    layer = fast_lstm.FastLSTM(5, return_sequences=True)
    y = layer(random_input((2, 3, 4, 5, 1))[0], training=True)
    assert calls == ["keras"]
    assert y.shape == (2, 3, 5)


# -----------------------------------------------------------------------------
# checkpoints


# A checkpoint of a fast bfloat16 network holds a plain float32 Keras
# network (keras.layers.LSTM, no custom class) with the same weights and
# the optimizer's state.
def test_checkpoint_holds_standard_float32_network(tmp_path):
    net = model.build_model(20, 2, 6, 2, 8, 4, 0.1,
                            precision="mixed_bfloat16", fast=True)
    model.compile_model(net, "rmsprop", None, 5.0)
    ids = np.arange(14, dtype=np.int32).reshape(2, 7) % 19 + 1
    net.train_on_batch(ids[:, :-1], ids[:, 1:])
    path = model.save_checkpoint(net, str(tmp_path), 1, 2.5)
    loaded = model.load_checkpoint(path)
    kinds = [type(layer) for layer in loaded.layers]
    assert kinds.count(keras.layers.LSTM) == 2
    assert fast_lstm.FastLSTM not in kinds
    assert {layer.dtype_policy.name for layer in loaded.layers} == {
        "float32"}
    for a, b in zip(loaded.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert "FastLSTM" not in json.dumps(loaded.get_config())
    assert int(loaded.optimizer.iterations.numpy()) == 1
    for a, b in zip(loaded.optimizer.variables, net.optimizer.variables,
                    strict=True):
        np.testing.assert_array_equal(a, b)


# The float32 fast network and its reloaded standard checkpoint predict the
# same probabilities.
def test_reloaded_checkpoint_predicts_the_same(tmp_path):
    net = model.build_model(20, 2, 6, 1, 8, 4, 0.0, fast=True)
    model.compile_model(net, "rmsprop", None, 5.0)
    ids = np.random.default_rng(0).integers(0, 20, (2, 6), dtype=np.int32)
    net.train_on_batch(ids, ids)
    model.reset_states(net)
    want = net(ids)
    model.reset_states(net)
    loaded = model.load_checkpoint(
        model.save_checkpoint(net, str(tmp_path), 1, 2.5))
    np.testing.assert_allclose(loaded(ids), want, rtol=1e-5, atol=1e-7)


# -----------------------------------------------------------------------------
# learning the same


# From the same weights on the same batches (no dropout), the fast float32
# network's losses track Keras' step for step, and the bfloat16 one's stay
# within 1% of them.
@pytest.mark.parametrize("precision, tolerance", [
    ("float32", 1e-4), ("mixed_bfloat16", 1e-2)])
def test_training_losses_match_float32_reference(precision, tolerance):
    vocab_size, batch, seq_len = 30, 8, 10
    # Rows count up by one (mod 29) from random starts: learnable.
    starts = np.random.default_rng(0).integers(0, 29, (20, batch, 1))
    ids = (starts + np.arange(seq_len + 1)) % 29 + 1  # (20, batch, seq + 1)
    keras.utils.set_random_seed(0)
    reference = model.build_model(vocab_size, batch, seq_len, 1, 32, 8, 0.0)
    fast = model.build_model(vocab_size, batch, seq_len, 1, 32, 8, 0.0,
                             precision=precision, fast=True)
    fast.set_weights(reference.get_weights())
    losses = []
    for net in (reference, fast):
        model.compile_model(net, "rmsprop", 0.01, 5.0)
        losses.append([float(net.train_on_batch(x[:, :-1], x[:, 1:]))
                       for x in ids.astype(np.int32)])
    want, got = np.array(losses)
    assert want[-1] < 0.9 * want[0]
    np.testing.assert_allclose(got, want, rtol=tolerance)


# -----------------------------------------------------------------------------
# precision


# "auto" reads the device: tensor-core GPU -> float16, older GPU ->
# float32, CPU with AMX or AVX512-BF16 -> bfloat16, other CPU -> float32;
# explicit names pass through.
@pytest.mark.parametrize("precision, gpu, flags, expected", [
    ("auto", None, {"avx2", "avx512_bf16"}, "mixed_bfloat16"),
    ("auto", None, {"amx_bf16", "amx_tile"}, "mixed_bfloat16"),
    ("auto", None, {"avx2", "avx512f"}, "float32"),
    ("auto", None, set(), "float32"),
    ("auto", (8, 0), set(), "mixed_float16"),
    ("auto", (7, 0), {"avx512_bf16"}, "mixed_float16"),
    ("auto", (6, 1), {"avx512_bf16"}, "float32"),
    ("float32", None, {"avx512_bf16"}, "float32"),
    ("mixed_float16", None, set(), "mixed_float16"),
])
def test_resolve_precision(precision, gpu, flags, expected, monkeypatch):
    monkeypatch.setattr(fast_lstm, "cpu_flags", lambda: flags)
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind: ["gpu:0"] if gpu else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda device: {"compute_capability": gpu})
    assert fast_lstm.resolve_precision(precision) == expected


# The flags line of /proc/cpuinfo becomes a set; no such file, no flags.
@pytest.mark.parametrize("text, expected", [
    ("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\n"
     "processor\t: 1\nflags\t\t: fpu\n", {"fpu", "avx512f", "avx512_bf16"}),
    ("processor\t: 0\n", set()),
    (None, set()),
])
def test_cpu_flags(text, expected, tmp_path):
    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    assert fast_lstm.cpu_flags(str(path)) == expected


# -----------------------------------------------------------------------------
# train.py


# train.py records the resolved precision, and a restore with another
# --precision rebuilds the network, carries weights and optimizer state
# over, and records the new precision for the next restore.
def test_restore_changes_precision(tmp_path):
    train_path, val_path = corpus_files(tmp_path)
    folder = tmp_path / "run"
    params = dict(TINY, checkpoint_dir=str(folder), precision="float32")
    net, *_ = train.train(params, train_path, val_path)
    settings = json.loads((folder / train.SETTINGS_FILE).read_text())
    assert settings["precision"] == "float32"
    steps = int(net.optimizer.iterations.numpy())
    restored = train.restore_model(utils.find_checkpoint(str(folder))[0],
                                   dict(settings, precision="mixed_bfloat16"),
                                   net.layers[1].input_dim)
    lstm = restored.layers[3]
    assert isinstance(lstm, fast_lstm.FastLSTM)
    assert lstm.compute_dtype == "bfloat16"
    assert int(restored.optimizer.iterations.numpy()) == steps > 0
    for a, b in zip(restored.optimizer.variables[2:],
                    net.optimizer.variables[2:]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(restored.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)
    train.train({"checkpoint_dir": str(folder), "restore": True,
                 "num_epochs": 1, "precision": "mixed_bfloat16"},
                train_path, val_path)
    settings = json.loads((folder / train.SETTINGS_FILE).read_text())
    assert settings["precision"] == "mixed_bfloat16"


# --precision auto is resolved before it is written down; a bad value is
# refused before any training.
@pytest.mark.parametrize("precision, error", [
    ("auto", None), ("float16", "precision 'float16': use one of")])
def test_precision_is_resolved_and_checked(precision, error, tmp_path):
    train_path, val_path = corpus_files(tmp_path)
    folder = tmp_path / "run"
    params = dict(TINY, checkpoint_dir=str(folder), precision=precision)
    if error:
        with pytest.raises(ValueError, match=error):
            train.train(params, train_path, val_path)
        assert not folder.exists()
        return
    train.train(params, train_path, val_path)
    settings = json.loads((folder / train.SETTINGS_FILE).read_text())
    assert settings["precision"] == fast_lstm.resolve_precision("auto")
