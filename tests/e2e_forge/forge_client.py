"""The HTTP calls the Forge tests make (plain ``requests``: Forge's API is A1111's)."""

from __future__ import annotations

import base64
import io

import requests
from PIL import Image

SIZE = 64  # Forge's SD 1.5 VAE is full size: 64x64 images keep the suite within minutes on a CPU


class ForgeClient:
    def __init__(self, server):
        self.server = server
        self.url = server.url

    def post(self, route: str, payload: dict, timeout: float = 900) -> dict:
        response = requests.post(f"{self.url}/sdapi/v1/{route}", json=payload, timeout=timeout)
        body = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"{route}: HTTP {response.status_code}: {body}")
        return body

    def generate(self, route: str, prompt: str, seed: int, sampler: str, steps: int, **kw) -> Result:
        common = dict(negative_prompt="", scheduler="Automatic", width=SIZE, height=SIZE, cfg_scale=5)
        payload = {**common, "prompt": prompt, "seed": seed, "sampler_name": sampler, "steps": steps, **kw}
        return Result(self.post(route, payload))

    def txt2img(self, prompt="a red barn", seed=1, sampler="Euler", steps=6, **kw) -> Result:
        return self.generate("txt2img", prompt, seed, sampler, steps, **kw)

    def img2img(self, image: str, prompt="a blue barn", seed=3, sampler="DDIM", steps=6, **kw) -> Result:
        return self.generate("img2img", prompt, seed, sampler, steps, init_images=[image], **kw)


class Result:
    def __init__(self, body: dict):
        import json

        self.json = body
        self.images = [Image.open(io.BytesIO(base64.b64decode(i))) for i in body["images"]]
        self.image = self.images[0]
        self.info = json.loads(body["info"])
