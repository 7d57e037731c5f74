""""Which is real?": a real image and a generated one side by side; the user picks the real one,
then sees the answer and what the real-or-generated detector made of the pair.

It plays on a run whose generation analysis (``cnnlab run``, ``cnnlab experiment generation``)
trained a GAN and a detector, or on a generator run of ``cnnlab generate train`` that ``cnnlab
generate detect`` gave a detector: the real image is one of the GAN's held-out evaluation
images, the generated one a fresh sample. Which side is real and the detector's view of the pair stay
on the server until the user answers (the page never holds the answer), and each round is
answered once.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections import OrderedDict
from pathlib import Path

SIDES = ("left", "right")
KEPT_ROUNDS = 1000
"""Unanswered rounds kept; older ones are forgotten (an answer to one gets a 404)."""


def game_result(path: Path) -> dict | None:
    """Where the game's generator and detector are: a generator run's own detector
    (``cnnlab generate detect``), else the run's stored generation result (the main job's, else
    the newest); None if neither, or if either names a folder outside the run."""
    import json

    from cnnlab.analysis.registry import load_results

    try:
        if (path / "detector.json").is_file():
            found = {"subruns": {"gan": "."}, "detector": json.loads((path / "detector.json").read_text())}
        else:
            stored, _ = load_results(path, "generation")
            found = next(s.result for s in stored if "detector" in s.result and "subruns" in s.result)
        inside = [(path / p).resolve() for p in (found["subruns"]["gan"], found["detector"]["subrun"])]
    except (StopIteration, ValueError, KeyError, TypeError):  # none, or not a file cnnlab wrote
        return None
    base = path.resolve()
    return found if all(p == base or base in p.parents for p in inside) else None


class WhichIsReal:
    def __init__(self):
        self.rounds: OrderedDict[str, dict] = OrderedDict()
        self.lock = threading.Lock()
        self.rng = random.Random(secrets.randbits(64))

    def new_round(self, path: Path, cache: dict) -> dict:
        """Two images (PNG data URIs) and the round's id."""
        import torch

        from cnnlab.serve.common import ApiError, cached_run
        from cnnlab.serve.jobs import _hwc, png_uri

        result = game_result(path)
        if result is None:
            raise ApiError(404, f"run {path.name!r} has no real-or-generated detector; run cnnlab "
                                f"generate detect {path.name} (a generator run), or cnnlab "
                                f"experiment generation {path.name} (a classifier run) first")
        gan_run = cached_run(path / result["subruns"]["gan"], cache)
        detector = cached_run(path / result["detector"]["subrun"], cache)
        key = f"gan:{gan_run.path}"
        gan = cache.get(key) or cache.setdefault(key, gan_run.load_model())
        with self.lock:
            seed, index = self.rng.randrange(2**31), self.rng.randrange(1 << 30)
            real_side = self.rng.choice(SIDES)
        held_out = gan_run.data().eval.x
        real = held_out[index % len(held_out)]
        fake = gan.sample(1, seed=seed)[0]
        pair = torch.stack([real, fake] if real_side == "left" else [fake, real])
        p_generated = detector.predict(pair, calibrated=False)[:, 1]
        round_id = secrets.token_hex(8)
        with self.lock:
            self.rounds[round_id] = {"real": real_side, "p_generated": [float(p) for p in p_generated]}
            while len(self.rounds) > KEPT_ROUNDS:
                self.rounds.popitem(last=False)
        return {"round": round_id, "left": png_uri(_hwc(pair[0].numpy())),
                "right": png_uri(_hwc(pair[1].numpy()))}

    def answer(self, round_id: str, pick: str) -> dict:
        """Whether ``pick`` (left or right) is the real image, and the detector's answer."""
        from cnnlab.serve.common import ApiError

        if pick not in SIDES:
            raise ApiError(422, "pick must be left or right (the side you think is real)")
        with self.lock:
            r = self.rounds.pop(round_id, None)
        if r is None:
            raise ApiError(404, f"no open round {round_id!r}; GET /api/runs/NAME/which-is-real "
                                "starts one")
        p = dict(zip(SIDES, r["p_generated"], strict=True))
        left_real = left_is_real(p["left"], p["right"])
        says_real = "left" if left_real >= 0.5 else "right"
        return {"correct": pick == r["real"], "real": r["real"],
                "detector": {"real": says_real, "correct": says_real == r["real"],
                             "confidence": max(left_real, 1 - left_real), "p_generated": p}}


def left_is_real(p_left: float, p_right: float) -> float:
    """The detector's probability that the left image is the real one, knowing that exactly one
    of the two is: P(left real, right generated) over both ways the pair can be."""
    a = (1 - p_left) * p_right
    b = p_left * (1 - p_right)
    return 0.5 if a + b == 0 else a / (a + b)
