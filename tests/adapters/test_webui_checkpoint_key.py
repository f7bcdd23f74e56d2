"""The key the WebUI adapter stores a checkpoint's fitted linear decoder under (models/GuidedSynthesis)."""

import os
from types import SimpleNamespace

from lib_guided.adapters.webui.script_logic import checkpoint_key
from lib_guided.gradop.decoders.linear import LinearLatentDecoder
from lib_guided.gradop.decoders.linear_cache import LinearDecoderCache


def test_the_hash_names_the_checkpoint_when_the_webui_has_one(tmp_path):
    assert checkpoint_key(SimpleNamespace(sha256="ab12", filename=str(tmp_path / "x"))) == "ab12"
    assert (
        checkpoint_key(None) is None and checkpoint_key(SimpleNamespace(sha256=None, filename=None)) is None
    )


def test_without_hashing_a_file_replaced_under_the_same_name_gets_a_new_key(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"0" * 10)
    info = SimpleNamespace(sha256=None, filename=str(path))
    first = checkpoint_key(info)
    assert first.startswith(str(path)) and first == checkpoint_key(info)
    path.write_bytes(b"1" * 11)
    os.utime(path, (1, 1))
    assert checkpoint_key(info) != first
    path.unlink()
    assert checkpoint_key(info) == str(path)  # a vanished file still names itself


def test_a_fit_kept_on_disk_is_read_back_by_the_next_session(tmp_path):
    fits = []

    def fit():
        fits.append(1)
        return LinearLatentDecoder([[0.1, 0.2, 0.3, 0.4]] * 3, [0.5, 0.5, 0.5], scale_factor=8)

    first = LinearDecoderCache(tmp_path).get_or_fit("some-key", fit)
    again = LinearDecoderCache(tmp_path).get_or_fit("some-key", fit)  # a new cache: the next WebUI start
    assert fits == [1] and again.coefficients() == first.coefficients()
