"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.serving.schemathesis_hooks``): what a valid image is.

JSON Schema can only say that an image part is ``format: binary``; these strategies make the valid bodies
schemathesis generates real images (PNG of random sizes and modes), so that its positive checks test the
service rather than the decoder's refusal of random bytes. Its negative checks still send garbage.
"""

from __future__ import annotations

import io

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image


@st.composite
def _png(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(1, 64))
    height = draw(st.integers(max(1, width // 32), min(64, width * 32)))  # within the aspect-ratio limit
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P"]))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


schemathesis.openapi.media_type("image/*", _png())
schemathesis.openapi.media_type("image/png", _png())
