"""Time and peak memory of a large painting: refused from its header (capped) vs decoded and palettised.

python tests/measure/painting_cap.py capped|uncapped SIDE      (one process per measurement)
"""

import io
import resource
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lib_guided.errors import GuidedInputError
from lib_guided.strokes.io import load_strokes, painting_pixel_cap
from lib_guided.strokes.palette import extract_palette

mode, side = sys.argv[1], int(sys.argv[2])
img = Image.new("RGB", (side, side), (90, 160, 60))
draw = ImageDraw.Draw(img)
for i in range(32):  # 32 overlapping squares: a few colours, compresses to a few hundred KB at most
    x = i * side // 40
    draw.rectangle([x, x, x + side // 10, x + side // 10], fill=(i * 7 % 256, 255 - i * 5, i * 3))
buf = io.BytesIO()
img.save(buf, format="PNG")
data = buf.getvalue()
del img, draw
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    cap = painting_pixel_cap(128, 128) if mode == "capped" else side * side
    s = load_strokes(data, max_pixels=cap)
    pal = extract_palette(s, tolerance=24)
    out = f"decoded {s.width}x{s.height}, {len(pal)} colours"
except GuidedInputError as e:
    out = f"refused: {str(e)[:80]}"
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(
    f"{mode} {side}² PNG ({len(data) // 1024} KB) for a 128² output: {dt:.2f} s, "
    f"peak RSS +{(peak - base) / 1024:.0f} MB ({out})"
)
