"""The Forge adapter (lllyasviel/stable-diffusion-webui-forge, its ``backend``): model and host."""
