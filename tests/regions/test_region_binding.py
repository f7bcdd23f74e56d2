"""Phrases in prompts: whole-word matching, and contexts of different chunk counts."""

import torch


def test_phrases_are_found_as_whole_words_before_being_appended():
    from lib_guided.regions.binding import contains_phrase, prompt_with_phrases

    assert contains_phrase("a cat, sleeping", "cat") and contains_phrase("A  Red   Barn", "red barn")
    assert not contains_phrase("a category of things", "cat")
    assert prompt_with_phrases("a category of things", ["cat"]) == "a category of things, cat"
    assert prompt_with_phrases("a cat on a mat", ["cat"]) == "a cat on a mat"


def test_conds_of_different_chunk_counts_are_padded_with_the_empty_prompt():
    from lib_guided.protocol import cat_conds, pad_conds

    empty = torch.full((1, 77, 8), 0.5)
    short, long = torch.zeros(2, 77, 8), torch.ones(1, 154, 8)
    padded = pad_conds([short, long], empty)
    assert [c.shape for c in padded] == [(2, 154, 8), (1, 154, 8)]
    assert torch.equal(padded[0][:, :77], short) and torch.equal(padded[0][:, 77:], empty.expand(2, -1, -1))
    assert cat_conds(padded).shape == (3, 154, 8)
    sdxl = pad_conds([{"crossattn": short, "vector": torch.zeros(2, 4)}, long], empty)
    assert sdxl[0]["crossattn"].shape == (2, 154, 8) and sdxl[0]["vector"].shape == (2, 4)
