"""Image tasks: an example that carries an image, decoding images with errors that say what is wrong, and the
user's own folder of images (one sub-folder per class) as a task."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import SoftPromptError
from .base import Example, Task, seeded_carve

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 40_000_000  # a decoded image larger than this is refused, not allocated (decompression bombs)


class UnsupportedImage(SoftPromptError):
    """Bytes that are an image in a format this path does not take (the server takes PNG and JPEG)."""


class ImageTooLarge(SoftPromptError):
    """An image over MAX_PIXELS."""


@dataclass(frozen=True, eq=False)
class ImageExample(Example):
    """An example whose input is an image; `text` names it (a path, or the dataset and row) for messages."""

    image: object = None
    """A file path, encoded bytes, a PIL image, or an (H, W) / (H, W, 3) uint8 array."""


def open_image(source, formats: tuple[str, ...] | None = None):
    """`source` (see ImageExample.image) as an RGB PIL image, or a SoftPromptError saying what is wrong with it.
    `formats` (PIL names, e.g. ("PNG", "JPEG")) limits which encodings are accepted."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if hasattr(source, "__array_interface__"):
        return Image.fromarray(source).convert("RGB")
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise SoftPromptError(f"image {str(source)!r} does not exist")
    where = "the image bytes" if isinstance(source, bytes) else f"image {str(source)!r}"
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            if formats and image.format not in formats:
                raise UnsupportedImage(f"{where} is {image.format or 'of an unknown format'}; send {' or '.join(formats)}")
            if image.width * image.height > MAX_PIXELS:
                raise ImageTooLarge(f"{where} is {image.width}x{image.height}: over the {MAX_PIXELS:,}-pixel limit")
            return image.convert("RGB")  # decodes now: a truncated file fails here, not in a training step
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as error:
        raise SoftPromptError(f"{where} is not a readable image ({error})") from error


def load_image_folder(path: str, test_folder: str = "") -> Task:
    """A classification task from a folder holding one sub-folder of images per class (the sub-folder's name is the
    label). Test images come from `test_folder` (same layout), else a seeded 80/20 carve (numpy default_rng(0))."""
    classes = _class_folders(Path(path))
    examples = _folder_examples(Path(path), classes)
    if test_folder:
        test_classes = _class_folders(Path(test_folder))
        if test_classes != classes:
            raise SoftPromptError(f"{test_folder}: classes {test_classes} differ from {path}'s {classes}")
        train, test = examples, _folder_examples(Path(test_folder), classes)
        note = f"{path}: {len(train)} train images / {test_folder}: {len(test)} test images"
    else:
        train, test = seeded_carve(examples, max(1, round(0.8 * len(examples))), seed=0)
        note = f"{path}: seeded 80/20 carve, {len(train)} train / {len(test)} test images (numpy default_rng(0))"
    return Task(Path(path).name, train, test, f"Classify the image as one of: {', '.join(classes)}.", note)


def _class_folders(root: Path) -> list[str]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise SoftPromptError(f"{root}: an image task needs one sub-folder per class, at least two; found {classes or 'none'}")
    return classes


def _folder_examples(root: Path, classes: list[str]) -> list[ImageExample]:
    examples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SoftPromptError(f"{root / name}: no images ({', '.join(IMAGE_SUFFIXES)})")
        examples += [ImageExample(str(file), tuple(classes), label, image=str(file)) for file in files]
    return examples
