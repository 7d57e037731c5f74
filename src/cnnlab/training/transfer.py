"""Start a model from trained weights: another run's (``--init-from RUN``) or a weights file the
user has (``--pretrained FILE``).

The tensors move by name, the body's only: a dense model (detector, segmenter, pose head)
holds its network as ``backbone.*``, a classifier is its own body with a head (``fc``,
``head``, ``classifier``) on top. So a classifier's body can start a detector's backbone, a
detector's backbone a segmenter's, and so on. A tensor is kept when its shape matches; heads
and anything else keep their fresh initialisation, and one line says what was kept, left and
skipped for its shape. Weights are read from safetensors; a torchvision ``.pth`` file (a
pickle) only with ``torch.load(weights_only=True)``, which refuses anything but tensors and
plain containers, after the hash in its name is checked as torchvision's downloader checks it.

``--pretrained FILE`` reads timm's and Hugging Face's safetensors (timm's tensor names),
torchvision's ResNet and VGG ``.pth`` files (the same names as timm's ``resnet*`` and, for
VGG, as torchvision's), torchvision's AlexNet, VGG-11 and GoogLeNet files (for the
``torchvision:`` models, its own layout), or a cnnlab weights file. The file's names are
matched to the model's under the prefix that fits most of them (none, ``net.`` for a
``timm:`` or ``torchvision:`` model, ``backbone.`` for a dense model's backbone); the model's
classifier always starts fresh, as timm and fastai do when the classes change.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.training import checkpoint as ckpt

HEADS = ("fc.", "head.", "classifier.")
"""Name prefixes of a classifier's head: never carried to another task or class list."""

OWN = ("mean", "std")
"""The input normalization: each model keeps its own data's statistics."""


def body_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model's body by name within the body: ``backbone.`` stripped from a dense model's,
    the head dropped from a classifier's."""
    if any(k.startswith("backbone.") for k in state):
        state = ckpt.strip_prefix("backbone.", state)
    return {k: v for k, v in state.items() if not k.startswith(HEADS) and k not in OWN}


def run_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The trained model's tensors of a run folder (its EMA weights where it kept them)."""
    import json

    folder = Path(path)
    weights, meta_path = folder / "weights" / "last.safetensors", folder / "weights" / "meta.json"
    if not weights.is_file() or not meta_path.is_file():
        raise CnnlabError(f"--init-from {path}: no trained weights there (weights/last.safetensors "
                          "and meta.json); give a run folder that cnnlab train finished")
    tensors, _ = ckpt.load_tensors(weights)
    ema = json.loads(meta_path.read_text()).get("ema")
    prefix = "ema.module." if ema else "model."
    if any(k.startswith(prefix) for k in tensors):
        tensors = ckpt.strip_prefix(prefix, tensors)
    return {k: v for k, v in tensors.items() if not k.startswith(("optim.", "lookahead."))}


def init_from(model: nn.Module, path: str | Path, log: Log = print) -> dict:
    """Copy the body of the run at ``path`` into ``model``'s body; return what moved."""
    source = body_tensors(run_weights(path))
    target = model.state_dict()
    dense = any(k.startswith("backbone.") for k in target)
    kept, reshaped, _ = _match(source, target, "backbone." if dense else "")
    if not learnt(kept):
        import json

        meta = Path(path) / "weights" / "meta.json"
        theirs = json.loads(meta.read_text()).get("model", "?")  # (run_weights read it already)
        raise CnnlabError(f"--init-from {path}: none of its tensors fit this model; that run trained "
                          f"{theirs}: give --model {theirs} (and its --model-kwargs), or leave "
                          f"--init-from out")
    model.load_state_dict(target | kept)
    left = [k for k in target if k not in kept]
    log(f"init from {path}: kept {len(kept)} tensors of its body, {len(left)} start fresh "
        f"({', '.join(sorted({k.split('.')[0] for k in left})) or 'none'}), "
        f"{len(reshaped)} skipped for their shape")
    return {"kept": len(kept), "fresh": len(left), "reshaped": reshaped}


def learnt(kept: dict[str, torch.Tensor]) -> bool:
    """Whether anything learnt fits: BatchNorm's step counters (``num_batches_tracked``,
    scalars) fit any model, so weights of another architecture once "kept" 13 of them alone."""
    return any(not k.endswith("num_batches_tracked") for k in kept)


def _match(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], prefix: str,
           skip: str | None = None) -> tuple[dict[str, torch.Tensor], list[str], int]:
    """The source tensors that fit ``target`` under ``prefix`` (cast to its dtypes), the keys
    skipped for their shape, and how many source tensors had no place; keys starting with
    ``skip`` (a classifier that starts fresh) are left out."""
    kept, reshaped, unused = {}, [], 0
    for name, value in source.items():
        key = prefix + name
        if skip and key.startswith(skip):
            continue
        if key not in target:
            unused += 1
        elif target[key].shape != value.shape:
            reshaped.append(key)
        else:
            kept[key] = value.to(target[key].dtype)
    return kept, reshaped, unused


def body_parameters(model: nn.Module) -> set[int]:
    """ids of the body's parameters: a dense model's ``backbone``, a classifier's all but its head."""
    if hasattr(model, "backbone"):
        return {id(p) for p in model.backbone.parameters()}
    head = {id(p) for p in model.get_classifier().parameters()}
    return {id(p) for p in model.parameters() if id(p) not in head}


def set_body_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze or thaw the body's weights. BatchNorm keeps learning its scale, shift and
    statistics while the rest is frozen (fastai's ``freeze`` with ``train_bn``): a body moved to
    new data needs its normalization moved too."""
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    norm = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters()}
    if not hasattr(model, "_cnnlab_learns"):  # what learns at all (fastnet's whitening does not)
        model._cnnlab_learns = {id(p) for p in model.parameters() if p.requires_grad}
    body = body_parameters(model) & model._cnnlab_learns
    for p in model.parameters():
        if id(p) in body and id(p) not in norm:
            p.requires_grad_(not frozen)


def body_freezer(cfg, model: nn.Module) -> Callable[[int], None]:
    """What each epoch calls with its index: freezes the body before ``cfg.freeze_epochs``,
    thaws it from then on (a no-op without --freeze-epochs). One process only: DDP needs every
    parameter to learn."""
    from cnnlab.training import distributed as dist_

    if not cfg.freeze_epochs:
        return lambda epoch: None
    if dist_.world()[1] > 1:
        raise CnnlabError("freeze_epochs runs in one process (DDP needs every parameter to learn); "
                          "drop torchrun or --freeze-epochs")
    return lambda epoch: set_body_frozen(model, epoch < cfg.freeze_epochs)


TORCHVISION_HASH = re.compile(r"-([a-f0-9]{6,})\.pth?$")
"""torchvision's weight files end in -<first hex digits of their SHA-256>.pth."""


def read_weights_file(path: str | Path, log: Log = print, flag: str = "--pretrained"
                      ) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or of a torchvision .pth (hash checked, tensors only);
    ``flag`` names the option in the one-line errors."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise CnnlabError(f"{flag} {path} is a folder; give the weights file in it (.safetensors, or "
                          "torchvision's .pth), or --init-from for a cnnlab run folder")
    if not p.is_file():
        raise CnnlabError(f"{flag} {path}: no such file; give a .safetensors file or "
                          "torchvision's .pth (e.g. resnet18-f37072fd.pth)")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(p)
        except (SafetensorError, OSError, ValueError) as e:  # a damaged file: named by its flag
            raise CnnlabError(f"{flag} {path}: not a readable safetensors file ({e}); download or "
                              "export it again") from None
    if p.suffix not in (".pth", ".pt"):
        raise CnnlabError(f"{flag} {path}: {p.suffix or 'no extension'} is not a weights format "
                          "cnnlab reads; give .safetensors (timm, Hugging Face) or torchvision's .pth")
    _check_hash(p, log, flag)
    try:
        with warnings.catch_warnings():  # torch's own advice on the failure: the line below says it
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle raises many kinds; each means "not a weights file"
        raise CnnlabError(f"{flag} {path}: not a plain file of tensors ({type(e).__name__}); it holds "
                          f"other objects (a whole model saved with torch.save(model)?), and cnnlab "
                          f"unpickles nothing else: save model.state_dict(), or convert it to "
                          f"safetensors") from None
    for key in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CnnlabError(f"{flag} {path}: holds no name -> tensor mapping (a state dict); "
                          "save model.state_dict(), or convert it to safetensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DDP's wrapper


def _check_hash(p: Path, log: Log, flag: str = "--pretrained") -> None:
    m = TORCHVISION_HASH.search(p.name)
    if not m or m.group(1).isdigit():  # model-20240101.pth: a date or a step, not a hash
        log(f"{flag} {p.name}: no hash in its name to check (torchvision's files end in "
            "-<hash>.pth)")
        return
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    if not digest.startswith(m.group(1)):
        raise CnnlabError(f"{flag} {p}: its SHA-256 starts {digest[:len(m.group(1))]}, not "
                          f"{m.group(1)} as its name says: the file is damaged or another one; "
                          "download it again")


def _classifier_prefix(model: nn.Module) -> str:
    """The name prefix (within the model) of its classifier's tensors, which start fresh."""
    if hasattr(model, "backbone"):
        return f"backbone.{getattr(model.backbone, 'classifier_name', 'fc')}."
    return f"{getattr(model, 'classifier_name', 'fc')}."


def pretrained(model: nn.Module, path: str | Path, log: Log = print) -> dict:
    """Load the weights file at ``path`` into ``model`` (its classifier stays fresh); return what
    moved. One line says how many tensors were kept, started fresh and skipped for their shape."""
    source = read_weights_file(path, log)
    for wrapper in ("ema.module.", "model."):  # a cnnlab run's last.safetensors
        if any(k.startswith(wrapper) for k in source):
            source = {k[len(wrapper):]: v for k, v in source.items() if k.startswith(wrapper)}
            break
    source = {k: v for k, v in source.items() if k not in OWN}  # its normalization is its data's
    target = model.state_dict()
    prefixes = ("", "net.", "backbone.", "backbone.net.")
    prefix = max(prefixes, key=lambda pre: sum(f"{pre}{k}" in target for k in source))
    kept, reshaped, unused = _match(source, target, prefix, skip=_classifier_prefix(model))
    if not learnt(kept):
        raise CnnlabError(f"--pretrained {path}: none of its {len(source)} tensors fit this model "
                          f"(e.g. {next(iter(source))}); give weights of the same architecture "
                          "(timm:resnet18 for torchvision's resnet18-*.pth)")
    model.load_state_dict(target | kept)
    fresh = sorted({k.removeprefix(prefix).split(".")[0] for k in target if k not in kept})
    log(f"pretrained {Path(path).name}: kept {len(kept)} of {len(target)} tensors, "
        f"{len(target) - len(kept)} start fresh ({', '.join(fresh) or 'none'}), "
        f"{len(reshaped)} skipped for their shape, {unused} of the file's unused")
    return {"kept": len(kept), "fresh": len(target) - len(kept), "reshaped": reshaped,
            "unused": unused}
