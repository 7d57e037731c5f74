"""Top-down keypoint estimation on object crops: direct regression and heatmaps.

Top-down: each object's box is cropped from its image, enlarged by a margin and made square
so the object keeps its shape, and resampled to S x S pixels (``crop_objects``, with
torchvision's ``roi_align``); a network then predicts the object's K keypoints in normalized
crop coordinates, (0, 0) the crop's top-left corner and (1, 1) its bottom-right one.
``to_crop`` and ``from_crop`` map keypoints between image pixels and crop coordinates; pixel
coordinates are continuous with pixel i covering [i, i + 1], as in ``scenes`` and as
``roi_align(aligned=True)`` reads boxes.

Two heads on the same CIFAR ResNet backbone:

- ``PoseRegressor``: DeepPose (Toshev & Szegedy 2014, "DeepPose: human pose estimation via deep
  neural networks"): the feature map, reduced to 16 channels and flattened, and one linear
  layer regress the 2K coordinates (as DeepPose's fully connected layers read the map);
  L1 loss over the keypoints that are present.
- ``PoseHeatmap``: a heatmap per keypoint (Tompson, Jain, LeCun & Bregler 2014; Newell, Yang &
  Deng 2016, "Stacked hourglass networks"). ``layer3``'s stride-4 map is upsampled and fused
  with ``layer2``'s (a U-Net stage), so the heatmaps have stride 2 (16 x 16 for 32-pixel crops).
  Each heatmap is a spatial softmax trained by KL divergence to a Gaussian around the keypoint
  (sigma one cell), so the loss is 0 at the answer. Decoding takes the peak and the
  probability-weighted mean of the cells within ``radius`` of it: a soft-argmax (Sun, Xiao, Wei,
  Liang & Wei 2018, "Integral human pose regression") kept local, so a second mode elsewhere
  does not pull the answer between the two. On a Gaussian target it is within 0.05 cells of
  the point away from the edges, and within half a cell anywhere in the crop.

Both losses ignore keypoints with visibility 0 (absent, or padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ImageClassifier
from cnnlab.models.resnet import CifarResNet
from cnnlab.models.segment import UpBlock, check_cifar_resnet, drop_classifier, resnet_pyramid


def crop_boxes_around(boxes: torch.Tensor, margin: float = 0.1, square: bool = True) -> torch.Tensor:
    """Boxes (M, 4) xyxy -> crop boxes: ``margin`` of the box's side added on each side; if
    ``square``, both sides take the longer one, so resizing to S x S keeps the object's shape."""
    boxes = boxes.float()
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
    if square:
        side = side.amax(dim=1, keepdim=True).expand(-1, 2)
    half = side * (1 + 2 * margin) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def crop_objects(images: torch.Tensor, boxes: Sequence[torch.Tensor], size: int, margin: float = 0.1,
                 square: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut every box out of its image and resample it to ``size`` x ``size``.

    Args:
        images: (N, C, H, W) uint8.
        boxes: per image, its objects' boxes (n_i, 4) xyxy in pixels.
        size: the crops' side in pixels.
        margin: added to each side of a box, as a fraction of the box's (longer) side.
        square: make the crop box square (keeps the object's aspect ratio).

    Returns:
        crops (M, C, size, size) uint8 (zeros beyond the image's edge), the image index of each
        crop (M,) and its crop box (M, 4) xyxy in image pixels, for ``to_crop``/``from_crop``.
    """
    from torchvision.ops import roi_align

    index = torch.cat([torch.full((len(b),), i, dtype=torch.long) for i, b in enumerate(boxes)])
    crop_boxes = crop_boxes_around(torch.cat([torch.as_tensor(b).reshape(-1, 4) for b in boxes]),
                                   margin, square)
    if len(index) == 0:
        return images.new_zeros(0, images.shape[1], size, size), index, crop_boxes
    rois = torch.cat([index[:, None].float(), crop_boxes], dim=1).to(images.device)
    crops = roi_align(images.float(), rois, output_size=size, spatial_scale=1.0, aligned=True)
    return crops.round().clamp(0, 255).to(torch.uint8), index, crop_boxes


def to_crop(kp: torch.Tensor, crop_boxes: torch.Tensor) -> torch.Tensor:
    """Keypoints (M, K, 2 or 3) in image pixels -> normalized crop coordinates (visibility kept)."""
    lo, side = crop_boxes[:, None, :2], crop_boxes[:, None, 2:] - crop_boxes[:, None, :2]
    return torch.cat([(kp[..., :2] - lo) / side, kp[..., 2:]], dim=-1)


def from_crop(kp_norm: torch.Tensor, crop_boxes: torch.Tensor) -> torch.Tensor:
    """Normalized crop coordinates (M, K, 2 or 3) -> image pixels; the inverse of ``to_crop``."""
    lo, side = crop_boxes[:, None, :2], crop_boxes[:, None, 2:] - crop_boxes[:, None, :2]
    return torch.cat([kp_norm[..., :2] * side + lo, kp_norm[..., 2:]], dim=-1)


def object_crops(images: torch.Tensor, targets: Sequence[dict], size: int, margin: float = 0.1
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A pose training set from detection targets (``boxes``, ``keypoints`` (n, K, 3) in pixels):
    crops (M, C, S, S) uint8, keypoints (M, K, 3) in crop coordinates, image index, crop boxes."""
    crops, index, crop_boxes = crop_objects(images, [t["boxes"] for t in targets], size, margin)
    kp = torch.cat([torch.as_tensor(t["keypoints"]).float() for t in targets])
    return crops, to_crop(kp, crop_boxes), index, crop_boxes


def present(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (B, K, 3) -> their coordinates (B, K, 2), those of absent keypoints (visibility 0)
    replaced by the crop's centre so whatever they held (even NaN) reaches no loss or gradient,
    and the mask (B, K) of the present ones."""
    visible = targets[..., 2] > 0
    return torch.where(visible[..., None], targets[..., :2], 0.5), visible


def masked_mean(values: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` (B, K) over the visible keypoints (0 if there are none)."""
    return torch.where(visible, values, 0).sum() / visible.sum().clamp(min=1)


class PoseRegressor(nn.Module):
    """DeepPose: the backbone's feature map, reduced to a few channels and flattened (so where
    a feature is survives), -> Linear -> (B, K, 2) crop coordinates; any ``ImageClassifier``
    serves as the backbone. (A globally pooled embedding would throw the positions away.)"""

    takes_targets = False

    def __init__(self, backbone: ImageClassifier, num_keypoints: int, reduced: int = 16):
        super().__init__()
        drop_classifier(backbone)
        self.backbone = backbone
        self.num_classes = self.num_keypoints = num_keypoints
        self.image_size = backbone.image_size
        with torch.no_grad():
            c, h, w = backbone.forward_features(
                torch.zeros(1, backbone.in_channels, self.image_size, self.image_size)).shape[1:]
        self.reduce = nn.Sequential(nn.Conv2d(c, reduced, 1), nn.ReLU())
        self.fc = nn.Linear(reduced * h * w, 2 * num_keypoints)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.constant_(self.fc.bias, 0.5)  # start at the crop's centre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone.forward_features(x)  # (B, 64, S/4, S/4) for ResNet-20
        x = self.reduce(x).flatten(1)  # (B, 16 * S/4 * S/4): positions kept
        x = self.fc(x)  # (B, 2K)
        return x.view(-1, self.num_keypoints, 2)  # (B, K, 2): (x, y) in [0, 1] of the crop

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean absolute error of the coordinates of keypoints with visibility > 0."""
        xy, visible = present(targets)
        l1 = masked_mean((outputs - xy).abs().sum(-1) / 2, visible)
        return l1, {"l1": float(l1.detach())}

    @torch.no_grad()
    def keypoints(self, x: torch.Tensor) -> torch.Tensor:
        """Crops (B, 3, S, S) in [0, 1] -> keypoints (B, K, 2) in crop coordinates."""
        return self(x)

    @torch.no_grad()
    def confidence(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) in (0, 1]: how well the pose agrees with itself when the crop moves by one pixel
        each way (corrected for the move): 1 / (1 + mean disagreement in pixels). Regression has
        no score of its own; COCO's keypoint AP ranks poses, so each needs one."""
        base, size, spread = self(x), x.shape[-1], torch.zeros(len(x), device=x.device)
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            moved = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            shift = torch.tensor([dx, dy], dtype=base.dtype, device=x.device) / size
            spread += ((self(moved) - shift - base).float() * size).norm(dim=-1).mean(-1) / 4
        return 1 / (1 + spread)


def gaussian_log_targets(kp: torch.Tensor, grid: tuple[int, int], sigma: float = 1.0) -> torch.Tensor:
    """Keypoints (B, K, 2+) in crop coordinates -> log-probability maps (B, K, h, w): a Gaussian
    of ``sigma`` cells around each keypoint, normalized over the map (a log-softmax, so a point
    far outside still gives finite values, peaked at the nearest edge)."""
    h, w = grid
    ys = torch.arange(h, dtype=kp.dtype, device=kp.device)
    xs = torch.arange(w, dtype=kp.dtype, device=kp.device)
    cx, cy = kp[..., 0:1] * w - 0.5, kp[..., 1:2] * h - 0.5  # (B, K, 1) in cell indices
    d2 = (ys - cy)[..., :, None] ** 2 + (xs - cx)[..., None, :] ** 2  # (B, K, h, w)
    return torch.log_softmax((-d2 / (2 * sigma ** 2)).flatten(2), dim=-1).view(d2.shape)


def decode_heatmaps(heat: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Non-negative heatmaps (B, K, h, w) -> (B, K, 2) crop coordinates: the weighted mean of
    the cells within ``radius`` of each map's peak. Near an edge the window shrinks to stay
    symmetric about the peak (a window cut short on one side would pull the mean inwards), so
    on a Gaussian target the answer stays within half a cell of the point even at the edge."""
    _, _, h, w = heat.shape
    peak = heat.flatten(2).argmax(dim=-1)  # (B, K)
    py, px = (peak // w)[..., None], (peak % w)[..., None]  # (B, K, 1)
    ry = torch.minimum(py, h - 1 - py).clamp(max=radius)
    rx = torch.minimum(px, w - 1 - px).clamp(max=radius)
    ys = torch.arange(h, device=heat.device)
    xs = torch.arange(w, device=heat.device)
    near = ((ys - py).abs() <= ry)[..., :, None] & ((xs - px).abs() <= rx)[..., None, :]  # (B, K, h, w)
    m = heat * near
    total = m.sum(dim=(-2, -1)).clamp(min=1e-12)
    x = (m.sum(dim=-2) * xs).sum(-1) / total
    y = (m.sum(dim=-1) * ys).sum(-1) / total
    return torch.stack([(x + 0.5) / w, (y + 0.5) / h], dim=-1)


class PoseHeatmap(nn.Module):
    """Heatmaps at stride 2: layer3 upsampled and fused with layer2, a 1x1 conv to K maps."""

    takes_targets = False

    def __init__(self, backbone: CifarResNet, num_keypoints: int, width: int = 32, sigma: float = 1.0,
                 radius: int = 2):
        super().__init__()
        check_cifar_resnet(backbone, "the heatmap pose head")
        drop_classifier(backbone)
        self.backbone = backbone
        self.num_classes = self.num_keypoints = num_keypoints
        self.image_size = backbone.image_size
        self.sigma, self.radius = sigma, radius
        c2, c4 = backbone.layer2[-1].bn2.num_features, backbone.layer3[-1].bn2.num_features
        self.up = UpBlock(c4, c2, width)
        self.heat = nn.Conv2d(width, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, s2, x = resnet_pyramid(self.backbone, x)  # (B, 32, S/2, S/2), (B, 64, S/4, S/4)
        x = self.up(x, s2)  # (B, 32, S/2, S/2)
        return self.heat(x)  # (B, K, S/2, S/2): logits of a spatial softmax per keypoint

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """KL divergence from the Gaussian target to each visible keypoint's spatial softmax."""
        xy, visible = present(targets)
        log_p = torch.log_softmax(outputs.flatten(2), dim=-1)  # (B, K, h*w)
        log_t = gaussian_log_targets(xy, tuple(outputs.shape[-2:]), self.sigma).flatten(2)
        kl = F.kl_div(log_p, log_t, reduction="none", log_target=True).sum(-1)  # (B, K)
        kl = masked_mean(kl, visible)
        return kl, {"kl": float(kl.detach())}

    @torch.no_grad()
    def keypoints(self, x: torch.Tensor) -> torch.Tensor:
        """Crops (B, 3, S, S) in [0, 1] -> keypoints (B, K, 2) in crop coordinates."""
        logits = self(x).float()  # float32 even under autocast: bf16 would round the weighted mean
        return decode_heatmaps(torch.softmax(logits.flatten(2), dim=-1).view(logits.shape), self.radius)

    @torch.no_grad()
    def confidence(self, x: torch.Tensor) -> torch.Tensor:
        """(B,): the heatmaps' probability mass within ``radius`` cells of each peak, averaged
        over keypoints (the peak-value score of top-down pose methods, as a mass)."""
        logits = self(x).float()
        p = torch.softmax(logits.flatten(2), dim=-1).view(logits.shape)
        window = 2 * self.radius + 1
        mass = F.avg_pool2d(p.flatten(0, 1)[:, None], window, 1, self.radius,
                            count_include_pad=True) * window ** 2  # mass of the window at each cell
        return mass.flatten(1).max(1).values.view(len(x), -1).mean(1)


def deeppose_resnet20(num_keypoints: int, image_size: int, in_channels: int = 3,
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                      ) -> PoseRegressor:
    """DeepPose-style keypoint regression on ResNet-20, for ``image_size`` x ``image_size`` crops."""
    backbone = CifarResNet(depth=20, num_classes=2 * num_keypoints, in_channels=in_channels,
                           image_size=image_size, mean=mean, std=std)
    return PoseRegressor(backbone, num_keypoints)


def heatmap_resnet20(num_keypoints: int, image_size: int, in_channels: int = 3,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                     ) -> PoseHeatmap:
    """Stride-2 keypoint heatmaps on ResNet-20, for ``image_size`` x ``image_size`` crops."""
    backbone = CifarResNet(depth=20, num_classes=num_keypoints, in_channels=in_channels,
                           image_size=image_size, mean=mean, std=std)
    return PoseHeatmap(backbone, num_keypoints)
