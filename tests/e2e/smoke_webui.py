"""Start the offline CPU WebUI on a tiny checkpoint, check txt2img and the page, stop it.

Also the launch helper the end-to-end tests can share: :func:`webui_command` holds the flags the
WebUI needs to run offline on a CPU, :class:`WebUI` starts it in its own process group, waits for
"Model loaded" and "Startup time:" (printed once the API is mounted) in its log: the API usually answers a
few seconds before the model is loaded, but a tiny model can load before the server is up. It stops the
whole group.

    WEBUI_ROOT=/work/webui $WEBUI_ROOT/venv/bin/python tests/e2e/smoke_webui.py [--ckpt tiny-sdxl] \
        [--screenshot /tmp/webui.png]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
# offline and quiet: without the background-networking flags Chromium keeps dialling closed hosts
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def webui_root() -> Path:
    return Path(os.environ.get("WEBUI_ROOT", "/work/webui"))


def webui_command(root: Path, ckpt: str, port: int, extra: list[str] | None = None) -> list[str]:
    """The launch command (run with ``cwd=root`` and ``HF_HUB_OFFLINE=1``)."""
    return [
        str(root / "venv" / "bin" / "python"),
        "launch.py",
        "--skip-prepare-environment",
        "--skip-install",
        "--skip-torch-cuda-test",
        "--skip-python-version-check",
        "--skip-version-check",
        "--use-cpu",
        "all",
        "--no-half",
        "--precision",
        "full",
        "--api",
        "--port",
        str(port),
        "--server-name",
        HOST,
        "--ckpt",
        str(Path("models") / "Stable-diffusion" / f"{ckpt}.safetensors"),
        "--no-download-sd-model",
        "--do-not-download-clip",
        "--disable-safe-unpickle",
        *(extra or []),
    ]


def link_extension(root: Path) -> None:
    """Link this repository into ``root/extensions/guided-synthesis`` (WebUI and Forge alike)."""
    repo = Path(__file__).resolve().parents[2]
    link = root / "extensions" / "guided-synthesis"
    if link.is_symlink() and link.resolve() == repo:
        return
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(repo)


class WebUI:
    """A WebUI process in its own process group, logging to ``log_path``."""

    READY = ("Model loaded", "Startup time:")  # all in the log: started

    def __init__(
        self,
        root: Path,
        ckpt: str = "tiny-sd1",
        port: int = 7861,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
        nice: int = 10,
    ):
        self.root, self.port = root, port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="webui-", suffix=".log")[1])
        # a fresh ui-config.json: the WebUI otherwise restores component values saved by earlier runs,
        # and the page would show stale defaults instead of the extension's own
        ui_config = Path(tempfile.mkdtemp(prefix="webui-ui-config-")) / "ui-config.json"
        self.cmd = webui_command(root, ckpt, port, [*(extra_args or []), "--ui-config-file", str(ui_config)])
        if nice:
            self.cmd = ["nice", "-n", str(nice), *self.cmd]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> float:
        """Start and wait for "Model loaded" and the API; returns the seconds it took."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        while time.monotonic() - t0 < timeout:
            text = self.log()
            # "Startup time:" is printed once the API is mounted. Do not poll the server to find out: a
            # request between gradio's launch and the API's setup makes the WebUI exit ("Cannot add
            # middleware after an application has started")
            if all(marker in text for marker in self.READY):
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise RuntimeError(f"WebUI exited with {self.proc.returncode}:\n{text[-4000:]}")
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"no {' and '.join(self.READY)} within {timeout} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> WebUI:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def txt2img(url: str, prompt: str, sampler: str, size: int = 64, steps: int = 4, seed: int = 1):
    """One txt2img call; returns (image as a float array, seconds)."""
    import numpy as np
    import requests
    from PIL import Image

    payload = {
        "prompt": prompt,
        "negative_prompt": "",
        "steps": steps,
        "sampler_name": sampler,
        "width": size,
        "height": size,
        "seed": seed,
        "cfg_scale": 7,
    }
    t0 = time.monotonic()
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=payload, timeout=600)
    r.raise_for_status()
    seconds = time.monotonic() - t0
    image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB")
    return np.asarray(image).astype(np.float64), seconds


def screenshot(url: str, out: Path, chromium: str = "chromium") -> None:
    """A headless Debian Chromium screenshot of the page (no GPU, no background network)."""
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        subprocess.run(
            [
                chromium,
                "--headless",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={out}",
                "--window-size=1400,1000",
                "--virtual-time-budget=15000",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default="tiny-sd1", help="checkpoint name in models/Stable-diffusion")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--samplers", default="Euler,DDIM")
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args(argv)

    ok = True
    webui = WebUI(webui_root(), args.ckpt, args.port)
    print(f"log: {webui.log_path}")
    try:
        print(f"started in {webui.start():.1f} s (until 'Model loaded')")
        for sampler in args.samplers.split(","):
            a, seconds = txt2img(webui.url, "a red barn", sampler, args.size)
            b, _ = txt2img(webui.url, "a blue lake", sampler, args.size)
            good = bool(np.isfinite(a).all() and a.std() > 1)
            ok &= good
            print(
                f"{sampler}: {seconds:.2f} s, {a.shape[1]}x{a.shape[0]}, mean {a.mean():.1f}, "
                f"std {a.std():.1f}, min {a.min():.0f}, max {a.max():.0f}, "
                f"mean |red barn - blue lake| {np.abs(a - b).mean():.2f}"
                f"{'' if good else '  <-- constant or NaN'}"
            )
        if args.screenshot:
            screenshot(webui.url + "/", args.screenshot)
            print(f"screenshot: {args.screenshot}")
    finally:
        webui.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
