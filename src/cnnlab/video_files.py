"""``cnnlab track`` and ``cnnlab action``: users' videos (MP4, GIF, a folder of frames).

Files are read with imageio (PyAV for MP4 and other FFmpeg formats, Pillow for GIF), never
OpenCV; a file that cannot be decoded gives one line and exit 2. ``track`` runs a detection
run's model on every frame and ByteTrack (or SORT) on its boxes, and writes the clip with each
track's box, id and trail, plus the tracks as MOTChallenge rows; ``action`` samples a clip's
frames as the action model was trained (evenly spaced, resized) and names the action.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.files import IMAGE_SUFFIXES, read_image
from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_write

MAX_FRAMES = 3000
"""Longest video read (frames); a longer one is refused before it fills memory."""


def frame_order(f: Path) -> list:
    """A frame's place by its name, numbers read as numbers: frame2 before frame10, as ffmpeg's
    unpadded ``frame%d.png`` names them (sorted as text, frame10 came before frame2)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", f.name)]


def read_video(path: str | Path) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a video file or of a folder of images (in ``frame_order``)."""
    p = Path(path)
    if p.is_dir():
        files = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES), key=frame_order)
        if not files:
            raise CnnlabError(f"{p} holds no image frames (PNG, JPEG, ...)")
        frames = [read_image(f, None, "RGB") for f in files[:MAX_FRAMES]]
        (h, w, _), first = frames[0].shape, files[0].name
        for f, x in zip(files, frames, strict=False):
            if x.shape[:2] != (h, w):
                raise CnnlabError(f"{f}: {x.shape[1]}x{x.shape[0]} pixels, where {first} has {w}x{h}; "
                                  "the frames of a clip must share one size")
        return np.stack(frames)
    if not p.is_file():
        raise CnnlabError(f"{p} not found; give a video file (MP4, GIF, ...) or a folder of frames")
    import imageio.v3 as iio

    try:
        frames = iio.imread(p, index=None)
    except Exception as e:  # imageio's plugins raise many kinds on undecodable input
        raise CnnlabError(f"{p} could not be decoded as a video ({type(e).__name__}); give an MP4, a "
                          f"GIF or a folder of frames") from None
    frames = np.asarray(frames)
    if frames.ndim == 3:  # one frame, or grey frames
        frames = frames[None] if frames.shape[-1] in (3, 4) else np.repeat(frames[..., None], 3, -1)
    if frames.ndim != 4 or len(frames) == 0:
        raise CnnlabError(f"{p}: expected frames of shape (T, H, W, 3), got {frames.shape}")
    if len(frames) > MAX_FRAMES:
        raise CnnlabError(f"{p} has {len(frames)} frames, more than {MAX_FRAMES}; cut it shorter")
    return np.ascontiguousarray(frames[..., :3].astype(np.uint8))


def resize_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) uint8 (bilinear, as read_image resizes)."""
    from PIL import Image

    small = [np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR)) for f in frames]
    return torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).contiguous()


def write_video(frames: list[np.ndarray], path: str | Path, fps: float = 12.0) -> None:
    """Frames (H, W, 3) uint8 as an animated GIF (Pillow) or an MP4 (PyAV, MPEG-4 part 2)."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames]
        atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True,
                                                      append_images=images[1:], duration=int(1000 / fps),
                                                      loop=0))
        return
    if path.suffix.lower() != ".mp4":
        raise CnnlabError(f"--out {path}: write a .gif or an .mp4 file")
    import imageio.v3 as iio

    even = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]  # the codec wants even sides
    data = iio.imwrite("<bytes>", np.stack(even), extension=".mp4", plugin="pyav", codec="mpeg4", fps=fps)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def track_file(run_path: str, video: str, out: str, byte: bool = True, threshold: float = 0.1,
               agnostic: bool = True) -> dict:
    """Track the objects of ``video`` with a detection run; write the drawn clip and MOT rows.
    ``agnostic``: one box per place whatever its class (``detector_detections``)."""
    from cnnlab.dense_files import check_threshold, dense_run
    from cnnlab.tracking.clips import detector_detections
    from cnnlab.tracking.sort import track_video

    check_threshold(threshold)
    run = dense_run(run_path)
    if run.config.task != "detect":
        raise CnnlabError(f"{run_path} is a {run.config.task} run; track needs a detection run")
    frames = read_video(video)
    size = run.meta["input_shape"][-1]
    h, w = frames.shape[1:3]
    detections = detector_detections(run.cached_model(), resize_frames(frames, size), threshold,
                                     agnostic=agnostic)
    scale = np.array([w / size, h / size, w / size, h / size])
    detections = [(b * scale, s) for b, s in detections]
    rows = track_video(detections, byte=byte)
    from cnnlab.viz.dense import draw_tracks

    write_video(draw_tracks(frames, rows), out)
    mot = Path(out).with_suffix(".txt")
    atomic_write(mot, lambda tmp: Path(tmp).write_text("".join(
        f"{int(r[0])},{int(r[1])},{r[2]:.1f},{r[3]:.1f},{r[4]:.1f},{r[5]:.1f},1,-1,-1,-1\n" for r in rows)))
    return {"frames": len(frames), "tracks": len(np.unique(rows[:, 1])) if len(rows) else 0,
            "out": out, "mot": str(mot)}


def action_file(run_path: str, video: str) -> dict:
    """The action of ``video`` under an action run (trained on videos): its top classes."""
    from cnnlab.run import load_run

    run = load_run(run_path)
    c, size, _ = run.meta["input_shape"]
    if not run.config.dataset.startswith("videos") or c % 3:
        raise CnnlabError(f"{run_path} is not an action run; train one with cnnlab train --dataset videos "
                          f"--model r2plus1d")
    frames = read_video(video)
    pick = np.linspace(0, len(frames) - 1, c // 3).round().astype(int)  # evenly spaced, as trained
    clip = resize_frames(frames[pick], size).reshape(1, c, size, size)
    probs = run.predict(clip)[0]
    order = np.argsort(-probs)[:3]
    return {"action": run.classes[order[0]], "probability": float(probs[order[0]]),
            "top": [(run.classes[k], float(probs[k])) for k in order],
            "frames": len(frames), "frames_read": c // 3}
