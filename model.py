"""The network and its checkpoints, shared by train.py and generate.py.

Embedding -> Dropout -> [LSTM (stateful, return_sequences) -> Dropout] x
num_layers -> TimeDistributed(Dense(vocab_size, softmax)). A run folder keeps
its best model as `model-epochNNN-valX.XXXX.keras` (epoch and val_loss in the
name, so the best one shows in a listing); it is written to a temp file,
fsynced and renamed, so a kill never leaves a half-written checkpoint.

    import model
    net = model.build_model(vocab_size=98, batch_size=128, seq_len=32,
                            num_layers=1, rnn_size=512, embedding_size=64,
                            drop_rate=0.05)
"""

import glob
import math
import os
import sys
import time
import zipfile

import utils  # noqa: F401, sets TensorFlow's log level before Keras loads
import keras

import fast_lstm

from utils import (DEFAULT_LEARNING_RATES, atomic_write_json,
                   checkpoint_name, clock, fsync_file_and_replace, log)

OPTIMIZERS = {"sgd": keras.optimizers.SGD,
              "rmsprop": keras.optimizers.RMSprop,
              "adagrad": keras.optimizers.Adagrad,
              "adadelta": keras.optimizers.Adadelta,
              "adam": keras.optimizers.Adam}


# ---------------------------------------------------------------- network --

def build_model(vocab_size, batch_size, seq_len, num_layers, rnn_size,
                embedding_size, drop_rate, precision="float32", fast=False):
    """Uncompiled model mapping int ids (batch_size, seq_len) to
    probabilities (batch_size, seq_len, vocab_size).

    precision: dtype policy of every layer but the float32 output layer
    ("float32", "mixed_bfloat16" or "mixed_float16"). fast: FastLSTM
    layers and a plain Dense over the sequence instead of TimeDistributed
    (whose per-timestep slices cost a quarter of a training step); the
    weights are the same, in the same order, either way.
    """
    lstm = fast_lstm.FastLSTM if fast else keras.layers.LSTM
    ids = keras.Input(batch_shape=(batch_size, seq_len), dtype="int32")
    h = keras.layers.Embedding(vocab_size, embedding_size,
                               dtype=precision)(ids)
    h = keras.layers.Dropout(drop_rate, dtype=precision)(h)
    for _ in range(num_layers):
        # Default activations keep the layer eligible for the cuDNN kernel.
        h = lstm(rnn_size, return_sequences=True, stateful=True,
                 dtype=precision)(h)
        h = keras.layers.Dropout(drop_rate, dtype=precision)(h)
    dense = keras.layers.Dense(vocab_size, activation="softmax",
                               dtype="float32")
    probs = dense(h) if fast else keras.layers.TimeDistributed(dense)(h)
    return keras.Model(ids, probs)  # probs: (batch, seq_len, vocab)


def make_optimizer(optimizer, learning_rate, clip_norm):
    """clip_norm 0 means no clipping (Keras clips each gradient tensor)."""
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES[optimizer]
    kwargs = {"clipnorm": clip_norm} if clip_norm > 0 else {}
    return OPTIMIZERS[optimizer](learning_rate=learning_rate, **kwargs)


def compile_model(net, optimizer, learning_rate, clip_norm):
    optimizer = make_optimizer(optimizer, learning_rate, clip_norm)
    # Keras adds loss scaling only under a global float16 policy.
    if any(layer.dtype_policy.name == "mixed_float16" for layer in net.layers):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    net.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return net


def reset_states(net):
    for layer in net.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()


# ------------------------------------------------------------ checkpoints --

def save_checkpoint(net, folder, epoch, val_loss):
    """Write the model durably, then drop the checkpoints it supersedes."""
    path = os.path.join(folder, checkpoint_name(epoch, val_loss))
    # Keras wants the .keras suffix; the leading dot hides it from listings.
    tmp = os.path.join(folder, ".partial-" + os.path.basename(path))
    # A plain float32 Keras network, with the optimizer and its state;
    # train.restore_model turns it back into the fast one.
    copy = fast_lstm.standard_copy(net)
    copy.compile(optimizer=net.optimizer, loss=net.loss)
    copy.save(tmp)
    fsync_file_and_replace(tmp, path)
    for old in glob.glob(os.path.join(folder, "model-epoch*-val*.keras")):
        if old != path:
            os.unlink(old)
    return path


def load_checkpoint(path):
    """The saved model, compiled, with its optimizer state. Raises
    ValueError when path is not a readable Keras checkpoint."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot load checkpoint {path}: it is not a Keras "
                         "checkpoint (damaged or truncated); use an intact "
                         "run folder")
    try:
        return keras.models.load_model(path)
    except Exception as e:  # Keras raises many kinds for a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot load checkpoint {path}: {first}; use an "
                         "intact run folder") from None


# -------------------------------------------------------------- callbacks --

def make_callbacks(folder, params, history, steps, val_steps):
    """Callbacks for one fit() call; the recorder says if the loss diverged.

    history is the run's history dict (loaded on restore); the recorder
    appends to it and rewrites history.json after every epoch.
    """
    baseline = history["best_val_loss"]
    recorder = RunRecorder(folder, history)
    callbacks = [
        StateReset(),
        recorder,
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params["patience"],
            min_delta=params["min_delta"], baseline=baseline),
        keras.callbacks.TensorBoard(os.path.join(folder, "logs"),
                                    write_graph=False, profile_batch=0),
        Progress(steps, val_steps, params["num_epochs"]),
    ]
    return callbacks, recorder


class StateReset(keras.callbacks.Callback):
    """Zero the LSTM states at the start of every epoch and every
    validation pass, so validation never starts from the training state and
    evaluating the same weights twice gives the same val_loss."""

    def on_epoch_begin(self, epoch, logs=None):
        reset_states(self.model)

    def on_test_begin(self, logs=None):
        reset_states(self.model)


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) \
        else None


class RunRecorder(keras.callbacks.Callback):
    """Stop on a NaN or exploding loss, keep the best checkpoint, write
    history.json."""

    def __init__(self, folder, history):
        super().__init__()
        self.folder = folder
        self.history = history
        self.diverged = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        # A uniform guess scores log(vocab_size); a loss twice that has blown
        # up (the cross-entropy clips probabilities, so it rarely turns NaN).
        uniform = math.log(self.model.output_shape[-1])
        if loss is not None and not loss <= 2 * uniform:
            self.model.stop_training = True
            best = self.history["best_epoch"]
            kept = (f"the best checkpoint (epoch {best}) is kept" if best
                    else "no checkpoint was written")
            self.diverged = (
                f"loss became {loss:.4g} at epoch {self.epoch_number} step "
                f"{batch + 1} (a uniform guess scores {uniform:.4f}); {kept}:"
                " lower --learning-rate or set --clip-norm")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        val_loss = _finite_or_none(logs.get("val_loss"))
        best = self.history["best_val_loss"]
        saved = (self.diverged is None and val_loss is not None
                 and (best is None or val_loss < best))
        if saved:
            save_checkpoint(self.model, self.folder, epoch + 1, val_loss)
            self.history["best_val_loss"] = val_loss
            self.history["best_epoch"] = epoch + 1
        self.history["epochs"].append({
            "epoch": epoch + 1,
            "loss": _finite_or_none(logs.get("loss")),
            "val_loss": val_loss,
            "seconds": round(time.perf_counter() - self.started, 3),
            "learning_rate": float(
                f"{float(self.model.optimizer.learning_rate):.6g}"),
            "saved": saved})
        atomic_write_json(os.path.join(self.folder, "history.json"),
                          self.history)

    @property
    def epoch_number(self):
        return len(self.history["epochs"]) + 1


class Progress(keras.callbacks.Callback):
    """One steady progress line on stderr: step of total, loss, time per
    step, ETA for the epoch and for the whole call; one line per epoch with
    loss and val_loss side by side."""

    def __init__(self, steps, val_steps, num_epochs, interval=0.5):
        super().__init__()
        self.steps, self.val_steps = steps, val_steps
        self.num_epochs = num_epochs
        self.interval = interval
        self.tty = sys.stderr.isatty()
        self.step_seconds = None
        self.val_seconds = None
        self.epochs_done = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        self.started = self.last_print = time.perf_counter()
        self.next_report = 0.1

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        done = batch + 1
        # The first step includes tracing; it is left out of the rate.
        if done == 1:
            self.first_step_end = now
            return
        self.step_seconds = (now - self.first_step_end) / (done - 1)
        if self.tty and now - self.last_print < self.interval \
                and done < self.steps:
            return
        if not self.tty and done < self.next_report * self.steps:
            return
        self.next_report += 0.1
        self.last_print = now
        line = (f"epoch {self.epoch} ({self.epochs_done + 1}/"
                f"{self.num_epochs}) step {done:,}/{self.steps:,} loss "
                f"{logs['loss']:.4f} {1000 * self.step_seconds:.0f} ms/step "
                f"ETA {clock(self._eta(done))}")
        log(("\r" + line + "\x1b[K") if self.tty else line,
            end="" if self.tty else "\n")

    def _eta(self, done):
        epoch_left = (self.steps - done) * self.step_seconds
        val = self.val_seconds
        if val is None:
            val = self.val_steps * self.step_seconds / 3
        epochs_after = self.num_epochs - self.epochs_done - 1
        return (epoch_left + val
                + epochs_after * (self.steps * self.step_seconds + val))

    def on_test_begin(self, logs=None):
        self.val_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self.val_seconds = time.perf_counter() - self.val_started

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done += 1
        seconds = time.perf_counter() - self.started
        logs = logs or {}
        line = (f"epoch {epoch + 1} loss {logs.get('loss', float('nan')):.4f}"
                f" val_loss {logs.get('val_loss', float('nan')):.4f} "
                f"{seconds:.1f} s")
        log(("\r" + line + "\x1b[K") if self.tty else line)
