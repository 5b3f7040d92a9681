import gzip

import numpy as np
import pytest
import torch

from utils import data


def test_fashion_mnist_shapes_ranges_and_balance():
    images, labels = data.fashion_mnist("test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert torch.equal(torch.bincount(labels), torch.full((10,), 1000))


def test_bad_split_is_refused():
    with pytest.raises(ValueError, match="split"):
        data.fashion_mnist("validation")


def test_olivetti_has_ten_faces_of_forty_people():
    faces, people = data.olivetti_faces()
    assert faces.shape == (400, 1, 64, 64)
    assert torch.equal(torch.bincount(people), torch.full((40,), 10))


def test_noise_recipe_wraps_around_like_the_uint8_cast():
    noise = data.noise_images(4, height=5, width=6, channels=3, seed=1)
    assert noise.shape == (4, 5, 6, 3) and noise.dtype == np.uint8
    values = np.random.default_rng(1).standard_normal((4, 5, 6, 3)) * 255
    expected = np.trunc(values).astype(np.int64) % 256
    assert (noise == expected).all()
    # a negative value lands near 255, as the article's cast does on x86
    assert int(np.trunc(-3.2)) % 256 == 253


def test_noise_is_reproducible_and_to_tensor_keeps_the_preprocessing():
    a, b = data.noise_images(3, seed=5), data.noise_images(3, seed=5)
    assert (a == b).all()
    tensor = data.to_tensor(a)
    assert tensor.shape == (3, 1, 28, 28)
    assert torch.allclose(tensor * 255, torch.from_numpy(a).permute(0, 3, 1, 2).float())


def test_blend_is_deterministic_and_in_range():
    grey = torch.rand(20, 1, 28, 28)
    photos = [np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)]
    a = data.blend_with_photos(grey, photos, seed=3)
    b = data.blend_with_photos(grey, photos, seed=3)
    assert a.shape == (20, 3, 28, 28) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1


def test_fashion_m_is_cached_and_matches_the_recipe():
    images, labels = data.fashion_m("test")
    assert images.shape == (10000, 3, 28, 28)
    grey, grey_labels = data.fashion_mnist("test")
    assert torch.equal(labels, grey_labels)
    again = data.blend_with_photos(grey, data.photographs(), seed=2)
    assert (again - images).abs().max() <= 0.5 / 255 + 1e-6, "cache = recipe, to uint8 rounding"


def test_mirror_file_is_checked_by_sha256(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "fashion-mnist"
    mirror.mkdir(parents=True)
    with gzip.open(mirror / "t10k-labels-idx1-ubyte.gz", "wb") as out:
        out.write(b"not the real labels")
    target = tmp_path / "cache" / "t10k-labels-idx1-ubyte"
    with pytest.raises(data.DataUnavailableError, match="does not hold the expected data"):
        data._copy_verified(mirror / "t10k-labels-idx1-ubyte.gz", target,
                            data.FASHION_FILES["t10k-labels-idx1-ubyte"], gunzip=True)
    assert not target.exists(), "a bad copy must not stay in the cache"


def test_offline_without_mirror_names_the_file_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVX_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("ADVX_DATA_MIRROR", raising=False)
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "_MEMORY", {})

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(data.DataUnavailableError) as error:
        data.fashion_mnist("test")
    message = str(error.value)
    assert "t10k-images-idx3-ubyte.gz" in message and "ADVX_DATA_MIRROR" in message


def test_mirror_pointing_nowhere_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVX_DATA_MIRROR", str(tmp_path / "does-not-exist"))
    with pytest.raises(data.DataUnavailableError, match="does not name a folder"):
        data.mirror_dir()


def test_mirror_fills_an_empty_cache(tmp_path, monkeypatch):
    mirror = data.mirror_dir()
    if mirror is None:
        pytest.skip("ADVX_DATA_MIRROR is not set")
    monkeypatch.setenv("ADVX_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.setattr(data, "_MEMORY", {})
    images, labels = data.fashion_mnist("test")
    assert images.shape == (10000, 1, 28, 28)
    assert (tmp_path / "fresh" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").exists()


def test_prefetch_fills_an_empty_cache_with_every_data_set(tmp_path, monkeypatch):
    """What the grader runs before its kernels, which cannot fetch (read-only data/)."""
    if data.mirror_dir() is None:
        pytest.skip("ADVX_DATA_MIRROR is not set")
    monkeypatch.setenv("ADVX_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.setattr(data, "_MEMORY", {})
    data.prefetch()
    raw = tmp_path / "fresh" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(data.FASHION_FILES)
    assert (tmp_path / "fresh" / "olivetti" / data.OLIVETTI_FILE).exists()
