"""Run by the WebUI when the extension is installed: adds the few packages the WebUI does not ship."""

import launch

for requirement, module in (("opencv-python-headless", "cv2"), ("safetensors", "safetensors")):
    if not launch.is_installed(module):
        launch.run_pip(f"install {requirement}", f"{requirement} for Guided Synthesis")
