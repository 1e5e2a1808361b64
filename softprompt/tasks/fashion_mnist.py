"""Fashion-MNIST few-shot tasks, read from the IDX files of the Debian package `dataset-fashion-mnist`.

fashion-mnist-K trains on K images per class (plain fashion-mnist: 10), the first K of each class in a numpy default_rng(0) permutation of
the 60,000 training images (so the 10-shot set is inside the 100-shot one), and tests on a fixed 2,000 of the
10,000 test images (the first 2,000 of a default_rng(0) permutation). The carves never change with a run's seed.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import SoftPromptError
from .base import Task
from .images import ImageExample

FOLDER = Path("/usr/share/datasets/fashion-mnist")
FOLDER_VARIABLE = "SOFTPROMPT_FASHION_MNIST"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
TEST_SIZE = 2000
SHOTS = {"fashion-mnist": 10, "fashion-mnist-10": 10, "fashion-mnist-100": 100}  # the plain name: the default, 10 shots
DESCRIPTION = "Classify the 28x28 greyscale photo of a clothing item into one of 10 Fashion-MNIST classes."
INSTALL = (f"needs the Debian package dataset-fashion-mnist: as root, apt-get install dataset-fashion-mnist; without "
           f"root, apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb DIR, then set "
           f"{FOLDER_VARIABLE}=DIR/usr/share/datasets/fashion-mnist")


def data_folder() -> Path:
    return Path(os.environ.get(FOLDER_VARIABLE) or FOLDER)


def installed() -> bool:
    return (data_folder() / "t10k-labels-idx1-ubyte.gz").is_file()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip): big-endian header, magic 0x0000 0x08 (uint8) + number of dimensions, then the sizes."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dimensions))
    if data[2] != 0x08:
        raise SoftPromptError(f"{path}: not an unsigned-byte IDX file")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def _split(name: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if name == "train" else "t10k"
    folder = data_folder()
    if not installed():
        raise SoftPromptError(f"Fashion-MNIST is not in {folder}: the fashion-mnist tasks {INSTALL}")
    return read_idx(folder / f"{prefix}-images-idx3-ubyte.gz"), read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")


def few_shot_rows(labels: np.ndarray, shots: int) -> list[int]:
    """The first `shots` rows of each class in a default_rng(0) permutation, in that permutation's order."""
    taken, rows = {}, []
    for row in np.random.default_rng(0).permutation(len(labels)).tolist():
        label = int(labels[row])
        if taken.get(label, 0) < shots:
            taken[label] = taken.get(label, 0) + 1
            rows.append(row)
    return rows


def load_fashion_mnist(name: str) -> Task:
    shots = SHOTS[name]
    images, labels = _split("train")
    test_images, test_labels = _split("test")
    test_rows = np.random.default_rng(0).permutation(len(test_labels))[:TEST_SIZE].tolist()

    def example(split: str, row: int, pixels: np.ndarray, label: int) -> ImageExample:
        return ImageExample(f"fashion-mnist {split} image {row}", CLASSES, int(label), image=pixels)

    train = [example("train", r, images[r], labels[r]) for r in few_shot_rows(labels, shots)]
    test = [example("test", r, test_images[r], test_labels[r]) for r in test_rows]
    note = (f"{name}: {shots} train images per class ({len(train)}) from the 60,000-image train split, the first of each "
            f"class in a numpy default_rng(0) permutation; test: {len(test)} of the 10,000 test images (default_rng(0))")
    return Task(name, train, test, DESCRIPTION, note)
