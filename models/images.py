"""Image decoding for multimodal embeddings: bytes in, one RGB `PIL.Image` out (size checked
from the header, EXIF orientation applied, first frame of animations; EPS and anything
undecodable refused). Plain Python: no Ray."""

from __future__ import annotations

import io
import struct
import warnings

from models.files import MAX_PIXELS
from rawinfer.contract.errors import InvalidRequest

_UNDECODABLE = (
    "The image could not be decoded; send a complete image file "
    "(JPEG, PNG, WebP, GIF, BMP, TIFF...)."
)
# Ghostscript runs as a subprocess on EPS: never for client bytes.
_REFUSED_FORMATS = frozenset({"EPS"})
_ORIENTATION = 0x0112  # EXIF tag
_formats: list[str] | None = None


def _allowed_formats() -> list[str]:
    global _formats
    if _formats is None:
        from PIL import Image

        Image.init()
        _formats = [f for f in Image.OPEN if f not in _REFUSED_FORMATS]
    return _formats


def _too_large(width: int, height: int, max_pixels: int) -> InvalidRequest:
    return InvalidRequest(
        f"The image is too large: {width}x{height} pixels; send an image of at most "
        f"{max_pixels:,} pixels (width x height), for example by resizing it.",
        {"width": width, "height": height, "max_pixels": max_pixels},
    )


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS):
    """Decode image bytes to an RGB `PIL.Image.Image` (first frame, EXIF orientation applied).

    Raises InvalidRequest for empty, corrupt, truncated or non-image bytes and for images whose
    header claims more than `max_pixels` pixels (refused before decoding any pixel data)."""
    if not data:
        raise InvalidRequest("The image is empty; send an image file.")
    from PIL import Image, ImageOps, UnidentifiedImageError

    bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        # Pillow's bomb guard warns (> MAX_IMAGE_PIXELS) before it raises (> 2x): make the warning
        # an error too. catch_warnings is process-global state: if two threads race on it, the
        # worst case is a warning logged instead of raised, and the max_pixels check below still
        # holds.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_allowed_formats())  # header only
            width, height = img.size
            if width <= 0 or height <= 0:
                raise InvalidRequest(
                    f"The image has no pixels ({width}x{height}); send a non-empty image."
                )
            if width * height > max_pixels:
                raise _too_large(width, height, max_pixels)
            # Animated images open on frame 0: load() decodes that frame only.
            img.load()
    except InvalidRequest:
        raise
    except bomb:
        raise InvalidRequest(
            f"The image is too large to decode safely; send an image of at most {max_pixels:,} "
            f"pixels.",
            {"max_pixels": max_pixels},
        ) from None
    except UnidentifiedImageError:
        raise InvalidRequest(
            "The data is not an image format the server reads; send JPEG, PNG, WebP, GIF, BMP or "
            "TIFF."
        ) from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        ZeroDivisionError,
        struct.error,
        MemoryError,
    ):
        # Pillow's plugins signal truncated/corrupt data with a wide range of exceptions.
        raise InvalidRequest(_UNDECODABLE) from None
    oriented = img
    try:
        if img.getexif().get(_ORIENTATION, 1) in range(2, 9):
            oriented = ImageOps.exif_transpose(img)  # a transposed copy (skipped when upright)
    except Exception:  # a malformed EXIF block: keep the pixels as stored
        oriented = img
    try:
        rgb = oriented.convert("RGB")
    except (OSError, ValueError, MemoryError):
        raise InvalidRequest(_UNDECODABLE) from None
    if oriented is not img:
        oriented.close()
    img.close()
    return rgb
