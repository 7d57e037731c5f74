"""Server-side batching: predictions that arrive together run as one batch.

Each request thread hands its image to ``Batcher.predict`` and waits; one worker thread takes
the first waiting image, gathers whatever else arrives within ``wait_ms`` (up to ``max_batch``)
and runs the model once on all of them. With 8 clients a CPU model then makes one call of 8
instead of 8 calls of 1. Whether that is faster is measured (benchmarks/serve_load.py
--batching), not assumed.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np


class Batcher:
    def __init__(self, predict, max_batch: int = 16, wait_ms: float = 2.0):
        self.predict_batch, self.max_batch, self.wait = predict, max_batch, wait_ms / 1000
        self.queue: queue.Queue = queue.Queue()
        self.sizes: list[int] = []
        threading.Thread(target=self._work, daemon=True, name="cnnlab-batcher").start()

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Probabilities for one uint8 image (C, H, W), computed in some batch."""
        done: Future = Future()
        self.queue.put((image, done))
        return done.result()

    def _work(self) -> None:
        while True:
            items = [self.queue.get()]
            deadline = time.perf_counter() + self.wait
            while len(items) < self.max_batch:
                left = deadline - time.perf_counter()
                try:
                    items.append(self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait())
                except queue.Empty:
                    break
            self.sizes.append(len(items))
            try:
                probs = self.predict_batch(np.stack([image for image, _ in items]))
                for (_, done), p in zip(items, probs, strict=True):
                    done.set_result(p)
            except Exception as e:  # noqa: BLE001 - every waiting request gets the error
                for _, done in items:
                    done.set_exception(e)
