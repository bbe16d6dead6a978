"""Characters per second of generate.py against the tutorial's loop.

Builds the reference network (fixed 98-symbol vocabulary, Embedding 64,
one LSTM of 512, random weights: speed does not depend on training) and
measures, in the same process:

  tutorial   model.predict on a (1, 1) batch per character, then sampling
  1 stream   generate.py's compiled step + float64 sampling, one stream
  64 streams the same, 64 streams in one batch
  tweets     one generate() call for --tweets samples of 140 characters,
             model copy and tracing included

It prints each rate and its ratio to the tutorial's loop. Timing is wall
clock on an otherwise idle machine; the first calls are left out as warm-up.

    python bench/generate_speed.py
    python bench/generate_speed.py --tutorial-chars 20 --steps 200
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
import generate  # noqa: E402
import utils  # noqa: E402

SETTINGS = {"num_layers": 1, "rnn_size": 512, "embedding_size": 64,
            "drop_rate": 0.05}
WARM_UP_STEPS = 5


def reference_model(batch_size):
    import model

    vocab = utils.build_vocabulary("fixed")
    net = model.build_model(vocab.size, batch_size, 1,
                            *(SETTINGS[k] for k in generate.ARCHITECTURE_KEYS))
    return net, vocab


def tutorial_rate(num_chars):
    """The tutorial's way: one model.predict call per generated character."""
    net, _ = reference_model(1)
    rng = np.random.default_rng(0)
    x = np.ones((1, 1), np.int32)
    for _ in range(WARM_UP_STEPS):
        net.predict(x, verbose=0)
    started = time.perf_counter()
    for _ in range(num_chars):
        probs = net.predict(x, verbose=0)[0, -1].astype(np.float64)
        x[0, 0] = rng.choice(len(probs), p=probs / probs.sum())
    return num_chars / (time.perf_counter() - started)


def stepped_rate(net, num_streams, num_steps):
    """generate.py's step and sampler, as generate() runs them."""
    step = generate.make_step(generate.build_inference_model(
        net, SETTINGS, num_streams))
    rng = np.random.default_rng(0)
    ids = np.ones(num_streams, np.int64)
    for _ in range(WARM_UP_STEPS):
        log_probs = step(ids)
    started = time.perf_counter()
    for _ in range(num_steps):
        ids = generate.sample_ids(log_probs, 1.0, 0, rng)
        log_probs = step(ids)
    return num_streams * num_steps / (time.perf_counter() - started)


def tweets_seconds(net, vocab, num_tweets):
    started = time.perf_counter()
    generate.generate(net, vocab, SETTINGS, length=140,
                      num_samples=num_tweets, random_seed=0)
    return time.perf_counter() - started


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tutorial-chars", type=int, default=50, help="characters"
                   " for the slow tutorial loop (default: 50)")
    p.add_argument("--steps", type=int, default=1000, help="steps per "
                   "stepped measurement (default: 1000)")
    p.add_argument("--tweets", type=int, default=1000, help="samples of 140 "
                   "characters in the end-to-end call (default: 1000)")
    args = p.parse_args(argv)
    utils.set_verbosity(0)
    import keras

    keras.utils.set_random_seed(0)
    net, vocab = reference_model(1)

    baseline = tutorial_rate(args.tutorial_chars)
    print(f"tutorial predict loop: {baseline:10,.0f} chars/s")
    for streams in (1, 64):
        rate = stepped_rate(net, streams, args.steps)
        print(f"generate.py {streams:2d} stream(s): {rate:10,.0f} chars/s "
              f"({rate / baseline:,.0f}x the tutorial's loop)")
    seconds = tweets_seconds(net, vocab, args.tweets)
    chars = 140 * args.tweets
    print(f"{args.tweets:,} tweets of 140 characters in one generate() call: "
          f"{seconds:.2f} s, {chars / seconds:,.0f} chars/s including the "
          "model copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
