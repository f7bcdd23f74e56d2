"""Run by the WebUI when the extension is installed: adds what the core needs and the WebUI lacks.

The WebUI ships torch, numpy and pillow (pyproject.toml's other runtime dependencies); OpenCV is the one
it may not have.
"""

import launch

if not launch.is_installed("cv2"):
    launch.run_pip("install opencv-python-headless", "opencv-python-headless for Guided Synthesis")
