"""A page holding only the Playground's mask inputs over a blue 64 x 64 init image (tests/e2e/test_mask_painter_browser.py):
it writes what the mask became, for the browser test to read."""

import numpy as np
import streamlit as st
from PIL import Image

from studio.playground_images import mask_inputs

try:
    mask = np.asarray(mask_inputs(Image.new("RGB", (64, 64), (0, 0, 255)), 64, 64, key="mask")) > 0
    st.write(f"MASK coverage {mask.mean():.4f} stroke {int(mask[13, 23])} corner {int(mask[60, 60])}")
except Exception as error:  # the page's own one-line errors, as the Playground shows them
    st.write(f"MASK error {error}")
