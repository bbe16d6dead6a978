"""FastLSTM: keras.layers.LSTM with a faster CPU training step.

Same weights (kernel, recurrent_kernel, bias; gates in Keras' i, f, c, o
order), same config, same results; only the way the recurrence runs on a CPU
differs. Keras' own CPU path runs a while loop of two matrix products and a
dozen small element-wise ops per timestep, and autodiff through it. Here:

  * the input projection of all timesteps is one product before the loop,
  * each timestep is one recurrent product plus one XLA-fused element-wise
    kernel (gates, cell state, output), forward and backward,
  * a hand-written gradient (tf.custom_gradient) does one product per
    timestep backward, and the weight gradients as single large products
    over all timesteps after the loop (as cuDNN does),
  * under a mixed policy the products run in the compute dtype (bfloat16 or
    float16) with weights cast once per call, while the cell state and the
    gate arithmetic stay float32.

Where cuDNN applies (a GPU and the default activations), or the layer uses
masks, dropout inside the layer, go_backwards or a non-TensorFlow backend,
the standard Keras path runs unchanged. standard_copy() turns a network of
FastLSTM layers back into plain float32 Keras (model.save_checkpoint saves
that); the class is registered as "char_rnn>FastLSTM" for anyone saving it
directly.

    import fast_lstm
    layer = fast_lstm.FastLSTM(512, return_sequences=True, stateful=True)
    layer.set_weights(keras_lstm.get_weights())  # and back again
"""

import keras
import tensorflow as tf

F32 = tf.float32
# CPU instructions that make bfloat16 products faster than float32 ones.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


# --------------------------------------------------------- fused kernels --

@tf.function(jit_compile=True)
def _cell_forward(zh, zx, bias, c):
    """One timestep's gates and states. zh = h @ R and zx = x @ W, both
    (batch, 4 * units) in the compute dtype; bias (4 * units,) and c
    (batch, units) float32. Returns h (compute dtype), c and the four gate
    activations (float32, kept for the backward pass)."""
    z = tf.cast(zh, F32) + tf.cast(zx, F32) + bias  # (batch, 4 * units)
    z_i, z_f, z_g, z_o = tf.split(z, 4, axis=1)
    i, f, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.sigmoid(z_o)
    g = tf.tanh(z_g)
    c = f * c + i * g
    h = o * tf.tanh(c)
    return tf.cast(h, zh.dtype), c, i, f, g, o


@tf.function(jit_compile=True)
def _cell_inference(zh, zx, bias, c):
    """_cell_forward without the saved gates."""
    z = tf.cast(zh, F32) + tf.cast(zx, F32) + bias
    z_i, z_f, z_g, z_o = tf.split(z, 4, axis=1)
    c = tf.sigmoid(z_f) * c + tf.sigmoid(z_i) * tf.tanh(z_g)
    h = tf.sigmoid(z_o) * tf.tanh(c)
    return tf.cast(h, zh.dtype), c


@tf.function(jit_compile=True)
def _cell_backward(dy, dh_next, dc, i, f, g, o, c_prev, c):
    """One timestep backward. dy (this step's output gradient) and dh_next
    (= dz_next @ R^T), both (batch, units) in the compute dtype; dc and the
    rest float32 (batch, units). Returns dz (batch, 4 * units) in the
    compute dtype, its float32 sum over the batch (this step's bias
    gradient) and the cell-state gradient for step t - 1."""
    dh = tf.cast(dy, F32) + tf.cast(dh_next, F32)
    tanh_c = tf.tanh(c)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    dz = tf.concat([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                    dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)],
                   axis=1)
    return tf.cast(dz, dh_next.dtype), tf.reduce_sum(dz, axis=0), dc * f


# ------------------------------------------------------------- recurrence --

def _project_inputs(x, kernel):
    """x (batch, seq_len, input_dim) -> time-major flat x (seq_len * batch,
    input_dim) and x @ W per timestep, a list of (batch, 4 * units)."""
    x_flat = tf.reshape(tf.transpose(x, [1, 0, 2]), (-1, x.shape[2]))
    return x_flat, _time_steps(tf.matmul(x_flat, kernel), x.shape[1])


def _time_steps(flat, seq_len):
    """Split a time-major (seq_len * batch, n) tensor into seq_len tensors of
    (batch, n). Splitting along the first axis shares the buffer (a list
    from tf.unstack would be copied)."""
    return tf.split(flat, seq_len, axis=0)


def lstm_inference(x, h0, c0, kernel, recurrent_kernel, bias):
    """Forward pass only; same arguments and results as lstm_training."""
    _, zx = _project_inputs(x, kernel)
    bias = tf.cast(bias, F32)
    h, c = tf.cast(h0, x.dtype), tf.cast(c0, F32)
    outputs = []
    for zx_t in zx:
        h, c = _cell_inference(tf.matmul(h, recurrent_kernel), zx_t, bias, c)
        outputs.append(h)
    return tf.stack(outputs, axis=1), h, c


@tf.custom_gradient
def lstm_training(x, h0, c0, kernel, recurrent_kernel, bias):
    """Run an LSTM over a whole sequence with a hand-written gradient.

    x: (batch, seq_len, input_dim), seq_len static; h0, c0: (batch, units);
    kernel (input_dim, 4 * units), recurrent_kernel (units, 4 * units) and
    bias (4 * units,) as in keras.layers.LSTM. x and the two kernels share
    the compute dtype, in which the products run. Returns (outputs (batch,
    seq_len, units) and h in the compute dtype, c in float32).
    """
    x_flat, zx = _project_inputs(x, kernel)
    bias32 = tf.cast(bias, F32)
    h, c = tf.cast(h0, x.dtype), tf.cast(c0, F32)
    hs, cs, gates = [h], [c], []
    for zx_t in zx:
        h, c, *gates_t = _cell_forward(tf.matmul(h, recurrent_kernel), zx_t,
                                       bias32, c)
        hs.append(h)
        cs.append(c)
        gates.append(gates_t)

    def grad(d_outputs, d_h, d_c):
        d_outputs = tf.transpose(_or_zeros(d_outputs, outputs), [1, 0, 2])
        dys = _time_steps(tf.reshape(d_outputs, (-1, h.shape[1])), len(zx))
        dh_next = tf.cast(_or_zeros(d_h, h), x.dtype)
        dc = tf.cast(_or_zeros(d_c, c), F32)
        dzs, d_biases = [None] * len(zx), []
        for t in reversed(range(len(zx))):
            dzs[t], d_bias, dc = _cell_backward(dys[t], dh_next, dc,
                                                *gates[t], cs[t], cs[t + 1])
            d_biases.append(d_bias)
            dh_next = tf.matmul(dzs[t], recurrent_kernel, transpose_b=True)
        dz = tf.concat(dzs, axis=0)  # (seq_len * batch, 4 * units)
        h_prev = tf.concat(hs[:-1], axis=0)  # (seq_len * batch, units)
        d_kernel = tf.matmul(x_flat, dz, transpose_a=True)
        d_recurrent = tf.matmul(h_prev, dz, transpose_a=True)
        d_bias = tf.add_n(d_biases)
        dx = tf.matmul(dz, kernel, transpose_b=True)  # (seq_len * batch, in)
        dx = tf.transpose(tf.reshape(dx, (len(zx), x.shape[0], -1)),
                          [1, 0, 2])
        return (dx, tf.cast(dh_next, h0.dtype), tf.cast(dc, c0.dtype),
                d_kernel, d_recurrent, tf.cast(d_bias, bias.dtype))

    outputs = tf.stack(hs[1:], axis=1)  # (batch, seq_len, units)
    return (outputs, h, c), grad


def _or_zeros(gradient, like):
    return tf.zeros_like(like) if gradient is None else gradient


# ------------------------------------------------------------------ layer --

@keras.saving.register_keras_serializable(package="char_rnn")
class FastLSTM(keras.layers.LSTM):
    """keras.layers.LSTM with the fast CPU path above; same arguments,
    weights and config. The fast path needs a static seq_len."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fast_path_applies(sequences, mask):
            return super().inner_loop(sequences, initial_state, mask,
                                      training=training)
        run = lstm_training if training else lstm_inference
        # NOTE: Keras hands over, and stores, the states in the compute
        # dtype, so under bfloat16 c is rounded once per batch (not per step).
        outputs, h, c = run(sequences, initial_state[0], initial_state[1],
                            *map(tf.convert_to_tensor, (
                                self.cell.kernel, self.cell.recurrent_kernel,
                                self.cell.bias)))
        return h, outputs, [h, c]

    def _fast_path_applies(self, sequences, mask):
        cell = self.cell
        standard = (
            keras.backend.backend() == "tensorflow"
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and cell.use_bias)
        if not standard or _cudnn_would_run(self):
            return False
        return (mask is None and not self.go_backwards
                and not cell.dropout and not cell.recurrent_dropout
                and sequences.shape[1] is not None
                and sequences.shape[0] is not None)


def _cudnn_would_run(layer):
    return (layer.use_cudnn in ("auto", True)
            and bool(tf.config.list_logical_devices("GPU")))


def standard_copy(net):
    """A float32 copy of a functional model with keras.layers.LSTM in place
    of every FastLSTM and the same weights: what checkpoints hold, so that
    plain Keras loads, exports and fine-tunes them."""
    def clone(layer):
        config = dict(layer.get_config(), dtype="float32")
        if isinstance(layer, FastLSTM):
            return keras.layers.LSTM.from_config(config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(net, clone_function=clone)
    copy.set_weights(net.get_weights())
    return copy


# -------------------------------------------------------------- precision --

def resolve_precision(precision):
    """The dtype policy name that precision "auto" stands for here:
    mixed_float16 on a GPU with tensor cores (compute capability >= 7.0),
    mixed_bfloat16 on a CPU with AMX or AVX512-BF16, float32 otherwise.
    Any other name is returned unchanged."""
    if precision != "auto":
        return precision
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability") or (0, 0)
        return "mixed_float16" if capability >= (7, 0) else "float32"
    flags = cpu_flags()
    if any(flag in flags for flag in BF16_CPU_FLAGS):
        return "mixed_bfloat16"
    return "float32"


def cpu_flags(path="/proc/cpuinfo"):
    """The instruction-set flags the kernel reports for the first CPU; an
    empty set where there is no /proc/cpuinfo (not Linux)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
