"""The batch order of google-research/bert's run_classifier.py, as a pure function (a prototype for the paper recipe).

Its training input (file_based_input_fn_builder, lines 541-550) reads the train rows in file order and does
`d = d.repeat(); d = d.shuffle(buffer_size=100)`, then batches with drop_remainder=True: an endless stream
of the file, repeated, each batch drawn from a sliding 100-row buffer. Batches keep nearly the file's order
(a row comes out about 100 rows before or after its place) and the epochs blend: no boundary, a row of the
next pass can come out before one of this pass. Training stops after int(rows / batch_size * epochs) steps.
"""

from __future__ import annotations

import numpy as np


def buffered_order(rows: int, batch_size: int, steps: int, seed: int, buffer: int = 100) -> np.ndarray:
    """The rows of each of `steps` batches, [steps, batch_size]: tf.data's shuffle buffer over the repeated file.

    tf.data's ShuffleDataset fills its buffer with the first `buffer` elements, then each output is a
    uniformly drawn element of the buffer, whose place the next input element takes; the input never ends
    (repeat() comes first), so the buffer stays full. Same process as TF's, not TF's random numbers: TF's
    order is unseeded in run_classifier.py, so no run of it can be replayed anyway.
    """
    if rows < 1 or batch_size < 1 or steps < 0 or buffer < 1:
        raise ValueError(
            f"need rows, batch_size, buffer >= 1 and steps >= 0, got {rows}, {batch_size}, {buffer}, {steps}"
        )
    draws = np.random.default_rng(seed).integers(0, buffer, size=steps * batch_size).tolist()
    pool = list(range(buffer))  # positions in the endless stream: pass k's row r is k * rows + r
    coming = buffer
    out = []
    for slot in draws:
        out.append(pool[slot])
        pool[slot] = coming
        coming += 1
    return (np.asarray(out, dtype=np.int64) % rows).reshape(steps, batch_size)
