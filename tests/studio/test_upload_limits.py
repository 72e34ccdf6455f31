"""Image uploads in the playground: a decompression bomb (a small file of a huge image) is refused
from its header, before anything is decoded; an allowed image is kept only as a small copy."""

import io
import os
import subprocess
import sys

from PIL import Image

from support import ROOT
from studio.playground import read_image
from studio.playground.vision import KEPT_SIDE, MAX_IMAGE_PIXELS


def png(width: int, height: int) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG", optimize=True)  # one colour: compresses to little
    buffer.seek(0)
    return buffer


MEASURE = """
import resource, sys
from studio.playground import read_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_image(open(sys.argv[1], "rb"))
except Exception as error:
    print(type(error).__name__, error)
print("grown_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_13000_square_png_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png(13000, 13000).getvalue())
    assert bomb.stat().st_size < 1_000_000 and 13000 * 13000 > MAX_IMAGE_PIXELS  # a small file of a huge image
    # In a fresh process, so that its peak memory shows what reading the upload cost.
    result = subprocess.run([sys.executable, "-c", MEASURE, str(bomb)], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    lines = result.stdout.splitlines()
    assert lines[0] == "NeuronExportError this image has 13000×13000 pixels; the playground takes at most 40 megapixels", result
    grown_mb = float(lines[1].split()[1])
    assert grown_mb < 100, f"the refused image still took {grown_mb:.0f} MB"  # decoded, it would be over 500 MB


def test_an_allowed_image_is_kept_small():
    image = read_image(png(3000, 2000))
    assert image.mode == "RGB" and max(image.size) == KEPT_SIDE and image.size == (KEPT_SIDE, 683)


def test_a_small_image_is_kept_as_it_is():
    assert read_image(png(200, 100)).size == (200, 100)
