"""Turn formats, where a reply ends, and the format probe."""

from __future__ import annotations

import random

import pytest

from tessera.errors import SchemaError
from tessera.generate.chat import FORMATS, ReplyStream, get_chat_format, resolve_chat_format, trim_reply


def test_gemma_turns():
    fmt = FORMATS["gemma"]
    text = fmt.render(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Capital of France?"},
        ]
    )
    assert text == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
    )
    assert fmt.reply("Paris.") == "Paris.<end_of_turn>"


def test_plain_and_none():
    assert FORMATS["plain"].prompt("Capital of France?") == "Question: Capital of France?\nAnswer:"
    assert FORMATS["plain"].reply("Paris") == " Paris\n"
    assert FORMATS["none"].prompt("a red") == "a red"
    assert FORMATS["none"].reply("square") == "square"


@pytest.mark.parametrize(
    "messages, match",
    [
        ("hello", "non-empty list"),
        ([], "non-empty list"),
        ([{"role": "robot", "content": "x"}], "role must be one of"),
        ([{"role": "user"}], "exactly 'role' and 'content'"),
        ([{"role": "user", "content": 3}], "content must be text"),
    ],
)
def test_bad_messages(messages, match):
    with pytest.raises(SchemaError, match=match):
        FORMATS["gemma"].render(messages)


def test_unknown_format():
    with pytest.raises(SchemaError, match="unknown chat format 'chatml'"):
        get_chat_format("chatml")


def test_trim_reply():
    assert trim_reply(" Paris\nQuestion: and Spain?", ["\n"]) == "Paris"
    assert trim_reply("  a red square  ", []) == "a red square"


@pytest.mark.parametrize(
    "raw", [" Paris is big\nQuestion: more", "no stop here  ", "  \n", "ab<end>cd", "x <en", "a\n\nb"]
)
def test_reply_stream_pieces_join_to_the_trimmed_reply(raw):
    stops = ["\n", "<end>"]
    rng = random.Random(0)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(raw)), k=min(len(raw) - 1, rng.randint(0, 4)))) if len(raw) > 1 else []
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
        stream = ReplyStream(stops)
        shown = "".join(stream.push(p) for p in pieces) + stream.close()
        assert shown == trim_reply(raw, stops)


def test_auto_is_plain_without_turn_tokens(tiny_gpt2):
    from tessera.generate.lm import load_causal_lm

    lm, tok = load_causal_lm(tiny_gpt2)
    assert resolve_chat_format("auto", lm, tok).name == "plain"
    assert resolve_chat_format("gemma", lm, tok).name == "gemma"
