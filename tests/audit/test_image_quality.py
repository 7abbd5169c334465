"""image_quality: real PNG files with one planted problem each among ordinary colour images."""

import numpy as np
from PIL import Image, ImageFilter

from audit.detectors import REGISTRY
from audit.detectors.image_quality import odd_score
from audit.image_measures import grey_entropy, laplacian_variance
from audit.images import load_rgb
from tests.audit.detector_inputs import make_inputs, quiet

NORMAL = 24


def textured(rng: np.random.Generator, size=(48, 48)) -> np.ndarray:
    """An ordinary colour image: a random colour gradient with sharp noisy texture."""
    h, w = size
    base = rng.uniform(60, 190, 3)
    ramp = np.linspace(-40, 40, w)[None, :, None]
    return np.clip(base + ramp + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def planted_images(rng: np.random.Generator) -> dict[str, Image.Image]:
    sharp = Image.fromarray(textured(rng))
    grey = np.asarray(sharp.convert("L"))
    return {
        "dark": Image.fromarray((textured(rng) * 0.12).astype(np.uint8)),
        "light": Image.fromarray((255 - textured(rng) * 0.05).astype(np.uint8)),
        "blurry": sharp.filter(ImageFilter.GaussianBlur(3)),
        "low_information": Image.new("RGB", (48, 48), (120, 90, 200)),
        "odd_size": Image.fromarray(textured(rng, (200, 200))),
        "odd_aspect": Image.fromarray(textured(rng, (16, 144))),
        "grayscale": Image.fromarray(np.stack([grey] * 3, axis=2)),
    }


def write_dataset(folder) -> tuple[list, list[str]]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(textured(rng)) for _ in range(NORMAL)]
    planted = planted_images(rng)
    paths = []
    for i, image in enumerate(images + list(planted.values())):
        paths.append(folder / f"img{i:02d}.png")
        image.save(paths[-1])
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return paths + [broken], list(planted)


def test_each_planted_problem_is_found_by_its_own_check(tmp_path):
    paths, planted = write_dataset(tmp_path)
    sizes = [Image.open(p).size if p.name != "broken.png" else (48, 48) for p in paths]
    inputs = make_inputs(np.zeros(len(paths), dtype=np.int64),
                         widths=np.array([s[0] for s in sizes]),
                         heights=np.array([s[1] for s in sizes]),
                         load_image=lambda row: load_rgb(paths[row], 10**8))
    frame = REGISTRY["image_quality"]().run(inputs, {}, quiet)
    assert not frame["is_issue"][:NORMAL].any()
    for offset, name in enumerate(planted):
        detail = frame.iloc[NORMAL + offset]["details"]
        assert name in detail["issues"], (name, detail)
        subscores = [v for k, v in detail.items() if k not in ("reason", "issues")]
        assert abs(frame.iloc[NORMAL + offset]["score"] - min(subscores)) < 1e-4
    assert frame.iloc[-1]["details"]["issues"] == ["unreadable"] and frame.iloc[-1]["score"] == 0
    assert frame["score"][:NORMAL].min() > frame["score"][NORMAL:].max()


def test_laplacian_variance_of_a_checkerboard_and_a_flat_image():
    board = (np.indices((6, 6)).sum(axis=0) % 2 * 10.0)[None]
    assert laplacian_variance(board)[0] == 1600.0      # every interior value is +40 or -40
    assert laplacian_variance(np.full((1, 6, 6), 7.0))[0] == 0.0


def test_entropy_of_two_equal_grey_levels_is_one_bit():
    grey = np.zeros((1, 4, 4))
    grey[0, :2] = 200
    assert np.isclose(grey_entropy(grey)[0], 1 / 8)


def test_odd_score_is_half_at_four_robust_deviations():
    values = np.array([0.0] * 9 + [0.4])     # MAD 0 -> spread floored at 0.1
    assert np.isclose(odd_score(values)[-1], 0.5) and odd_score(values)[0] == 1.0
