"""Image tasks: the Fashion-MNIST few-shot carves (skipped, saying how to install it, where the Debian package is
missing), a folder of images by class, and images that cannot be read."""
from __future__ import annotations

import collections
import gzip
import io

import numpy as np
import pytest

from softprompt.errors import SoftPromptError
from softprompt.tasks import ImageExample, load_task
from softprompt.tasks import fashion_mnist
from softprompt.tasks.images import UnsupportedImage, open_image

NEEDS_DATA = pytest.mark.skipif(not fashion_mnist.installed(), reason=f"Fashion-MNIST: the tasks {fashion_mnist.INSTALL}")


@NEEDS_DATA
def test_the_few_shot_carves_are_balanced_nested_and_fixed():
    ten, hundred = load_task("fashion-mnist-10"), load_task("fashion-mnist-100")
    assert collections.Counter(e.label for e in ten.train) == {label: 10 for label in range(10)}
    assert collections.Counter(e.label for e in hundred.train) == {label: 100 for label in range(10)}
    assert {e.text for e in ten.train} <= {e.text for e in hundred.train}  # the 10-shot set is in the 100-shot one
    assert len(ten.test) == 2000 and [e.text for e in ten.test] == [e.text for e in hundred.test]
    assert ten.train[0].image.shape == (28, 28) and ten.label_words[0] == "T-shirt/top"
    assert "10 train images per class" in ten.split_note and "2000 of the 10,000 test images" in ten.split_note
    assert [e.text for e in load_task("fashion-mnist").train] == [e.text for e in ten.train]  # the default: 10 shots


def test_the_carve_takes_the_first_of_each_class_in_a_seeded_permutation():
    labels = np.array([0, 1, 0, 1, 0, 1, 2, 2])
    order = np.random.default_rng(0).permutation(8).tolist()
    rows = fashion_mnist.few_shot_rows(labels, 1)
    assert rows == sorted(rows, key=order.index) and sorted(labels[rows].tolist()) == [0, 1, 2]


def test_an_idx_file_reads_back(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.tobytes())
    assert np.array_equal(fashion_mnist.read_idx(path), array)


def test_a_missing_dataset_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv(fashion_mnist.FOLDER_VARIABLE, str(tmp_path))
    with pytest.raises(SoftPromptError, match="apt-get install dataset-fashion-mnist; without root, apt-get download"):
        load_task("fashion-mnist-10")


def write_folder(root, sizes=(3, 2)):
    from PIL import Image

    for name, count in zip(("cats", "dogs"), sizes):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((9, 9, 3), 40 * i, dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_a_folder_of_images_by_class_is_a_task(tmp_path):
    task = load_task(str(write_folder(tmp_path / "pets")))
    assert task.name == "pets" and task.label_words == ("cats", "dogs")
    assert len(task.train) + len(task.test) == 5 and all(isinstance(e, ImageExample) for e in task.train)
    assert "seeded 80/20 carve" in task.split_note


def test_a_folder_task_refuses_a_folder_without_classes(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(SoftPromptError, match="one sub-folder per class, at least two"):
        load_task(str(tmp_path / "flat"))


def test_bad_images_are_named(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(SoftPromptError, match="broken.png' is not a readable image"):
        open_image(broken)
    with pytest.raises(SoftPromptError, match="does not exist"):
        open_image(tmp_path / "absent.png")
    from PIL import Image

    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(UnsupportedImage, match="is GIF; send PNG or JPEG"):
        open_image(gif.getvalue(), ("PNG", "JPEG"))
