"""Encoder -> projector -> causal LM: media become a few "words" in the LM's input (the LLaVA pattern).

The prompt is rendered by the chat format with a placeholder (``<image>``, ``<audio>``) where
the media go; without one they go first in the user turn. The placeholder is split out, the
text around it is embedded by the LM's own embedding table, and the projected encoder tokens
are inserted between, so the LM reads one mixed sequence through ``inputs_embeds``:

    [BOS] <start_of_turn>user\\n [media x K] Describe this.<end_of_turn>\\n<start_of_turn>model\\n
    | a dog runs<end_of_turn>     (scored when training)

Training scores only the reply (labels are -100 elsewhere), padded on the right; generation
pads on the left so every row's next token sits at the same position, and ``generate`` derives
positions from the attention mask. With no encoder the same class is a plain chat LM.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tessera.errors import SchemaError
from tessera.generate.chat import ChatFormat, Message, ReplyStream, check_messages, trim_reply

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch

IGNORE = -100  # the label cross-entropy skips


@dataclass
class Encoded:
    """Encoder output ``(B, T, D)`` and its mask ``(B, T)``, computed ahead of training.

    A frozen encoder gives the same output every epoch, so training runs it once per distinct
    input (:func:`tessera.generate.train.encode_once`) and the projector reads these.
    """

    tokens: Tensor
    mask: Tensor

    def index(self, idx: Tensor) -> "Encoded":
        return Encoded(self.tokens[idx], self.mask[idx])

    def to(self, device: torch.device | str) -> "Encoded":
        return Encoded(self.tokens.to(device), self.mask.to(device))

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


Media = Union["ModalityBatch", Encoded]


class MultimodalLM(nn.Module):
    def __init__(
        self,
        lm: nn.Module,
        tokenizer: Any,
        chat: ChatFormat,
        encoder: nn.Module | None = None,
        projector: nn.Module | None = None,
        placeholder: str = "<image>",
    ) -> None:
        super().__init__()
        if (encoder is None) != (projector is None):
            raise SchemaError("an encoder needs a projector (and a projector an encoder)")
        self.lm, self.encoder, self.projector = lm, encoder, projector
        self.tokenizer, self.chat, self.placeholder = tokenizer, chat, placeholder
        if tokenizer.eos_token_id is None:
            raise SchemaError("the LM's tokenizer has no end-of-sequence token, so a reply could never end")
        probe = tokenizer("a").input_ids
        self.bos = (
            [tokenizer.bos_token_id]
            if tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
            else []
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # A reply ends at EOS and at the format's turn end: as a token id when that is one token, and
        # as text too unless it is a special token (decoding drops those): "\n" ends a plain reply
        # whether it comes alone or inside a token such as ".\n" or "\n\n".
        end_ids = tokenizer(chat.reply_end, add_special_tokens=False).input_ids if chat.reply_end else []
        self.stop_ids = [tokenizer.eos_token_id] + (end_ids if len(end_ids) == 1 else [])
        special = chat.reply_end in tokenizer.all_special_tokens or chat.reply_end in tokenizer.get_added_vocab()
        self.stop_strings = [chat.reply_end] if chat.reply_end and not special else []
        self._segments_cache: dict[Any, tuple[list[int], list[int]]] = {}

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    # -- building the mixed sequence -------------------------------------------------------
    def encode(self, batch: ModalityBatch) -> Encoded:
        """The encoder's tokens (one for a pooled encoder) and their mask (False for absent inputs)."""
        assert self.encoder is not None
        out, mask = self.encoder(batch)
        if out.dim() == 2:
            out, mask = out.unsqueeze(1), None
        present = batch.present.to(out.device).unsqueeze(1)
        mask = present.expand(-1, out.shape[1]) if mask is None else mask.to(out.device) & present
        return Encoded(out, mask)

    def prefix(self, media: Media) -> tuple[Tensor, Tensor]:
        """Projected media tokens ``(B, K, H)`` and their mask, from a decoded batch or its encoder output."""
        assert self.encoder is not None and self.projector is not None
        encoded = media if isinstance(media, Encoded) else self.encode(media)
        tokens, tmask = self.projector(encoded.tokens, encoded.mask)
        return tokens.to(self.lm.get_input_embeddings().weight.dtype), tmask

    def segments(self, conversation: str | Sequence[Message]) -> tuple[list[int], list[int]]:
        """Token ids before and after the media (BOS included) for a prompt or a list of messages.

        The media go where the placeholder is, else first in the first user turn. Memoised:
        training repeats the same few prompts.
        """
        key = (
            conversation
            if isinstance(conversation, str)
            else tuple((m["role"], m["content"]) for m in check_messages(conversation))
        )
        if key not in self._segments_cache:
            messages = (
                [{"role": "user", "content": key}]
                if isinstance(key, str)
                else [dict(role=r, content=c) for r, c in key]
            )
            count = sum(m["content"].count(self.placeholder) for m in messages)
            if count > 1 or (count and self.encoder is None):
                raise SchemaError(
                    f"the prompt has {count} {self.placeholder} placeholder(s); "
                    + ("this model takes no media" if self.encoder is None else "one input goes in one place")
                )
            if not count and self.encoder is not None:
                first = next((m for m in messages if m["role"] == "user"), None)
                if first is None:
                    raise SchemaError("the conversation has no user message to put the media in")
                first["content"] = self.placeholder + ("\n" + first["content"] if first["content"] else "")
            before, _, after = self.chat.render(messages).partition(self.placeholder)
            encode = lambda s: self.tokenizer(s, add_special_tokens=False).input_ids if s else []  # noqa: E731
            self._segments_cache[key] = (self.bos + encode(before), encode(after))
        return self._segments_cache[key]

    def reply_ids(self, answer: str, max_tokens: int) -> list[int]:
        """The tokens a training target scores: the answer (cut to ``max_tokens``) and the turn end."""
        encode = lambda s: self.tokenizer(s, add_special_tokens=False).input_ids  # noqa: E731
        end = encode(self.chat.reply_end) if self.chat.reply_end else [self.tokenizer.eos_token_id]
        return encode(self.chat.reply_prefix + answer)[:max_tokens] + end

    def assemble(
        self,
        media: tuple[Tensor, Tensor] | None,
        prompts: Sequence[str | Sequence[Message]],
        replies: Sequence[list[int]] | None = None,
        *,
        left_pad: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``inputs_embeds``, ``attention_mask`` and ``labels`` for a batch of prompts (and replies when training)."""
        embed = self.lm.get_input_embeddings()
        device = embed.weight.device
        rows, labels = [], []
        for i, prompt in enumerate(prompts):
            before, after = self.segments(prompt)
            reply = replies[i] if replies is not None else []
            ids = torch.tensor(before + after + reply, dtype=torch.long, device=device)
            text = embed(ids)
            media_i = media[0][i][media[1][i]] if media is not None else text[:0]
            nb, na = len(before), len(after)
            rows.append(torch.cat([text[:nb], media_i, text[nb:]]))
            labels.append([IGNORE] * (nb + len(media_i) + na) + reply)
        width = max(len(r) for r in rows)
        dim = rows[0].shape[-1]
        inputs = rows[0].new_zeros(len(rows), width, dim)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        label = torch.full((len(rows), width), IGNORE, dtype=torch.long, device=device)
        for i, (r, lab) in enumerate(zip(rows, labels)):
            span = slice(width - len(r), width) if left_pad else slice(0, len(r))
            inputs[i, span] = r
            mask[i, span] = 1
            label[i, span] = torch.tensor(lab, dtype=torch.long, device=device)
        return inputs, mask, label

    # -- training ----------------------------------------------------------------------------
    def loss(
        self,
        batch: Media | None,
        prompts: Sequence[str | Sequence[Message]],
        answers: Sequence[str],
        max_reply_tokens: int = 64,
    ) -> Tensor:
        """Mean cross-entropy of the reply tokens given media and prompt.

        Logits are computed only at the positions that predict a reply token (``logits_to_keep``):
        with Gemma's 262k-word vocabulary the output layer costs as much as the rest of the
        model, and most positions are prompt and media.
        """
        media = self.prefix(batch) if batch is not None and self.encoder is not None else None
        replies = [self.reply_ids(a, max_reply_tokens) for a in answers]
        inputs, mask, labels = self.assemble(media, prompts, replies, left_pad=False)
        targets = labels[:, 1:]  # position t predicts token t + 1
        positions = (targets != IGNORE).any(0).nonzero().squeeze(1)
        logits = self.lm(inputs_embeds=inputs, attention_mask=mask, logits_to_keep=positions).logits
        return F.cross_entropy(logits.float().flatten(0, 1), targets[:, positions].flatten(), ignore_index=IGNORE)

    # -- generation --------------------------------------------------------------------------
    def _generate_kwargs(
        self,
        batch: ModalityBatch | None,
        prompts: Sequence[str | Sequence[Message]],
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_p: float,
        use_cache: bool,
        fit_context: bool = False,
        num_beams: int = 1,
        **extra: Any,
    ) -> dict[str, Any]:
        """``generate``'s arguments; a prompt that leaves no room for ``max_new_tokens`` in the LM's context is an
        error, unless ``fit_context``, which asks for only what the context leaves."""
        if max_new_tokens < 1:
            raise SchemaError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not isinstance(num_beams, int) or isinstance(num_beams, bool) or num_beams < 1:
            raise SchemaError(f"num_beams must be an integer >= 1 (1: greedy), got {num_beams!r}")
        if num_beams > 1 and do_sample:
            raise SchemaError("num_beams > 1 is beam search, which picks the likeliest sequences; it does not sample: "
                              "drop do_sample (or use num_beams=1)")
        media = self.prefix(batch) if batch is not None and self.encoder is not None else None
        inputs, mask, _ = self.assemble(media, prompts, left_pad=True)
        limit = max_positions(self.lm)
        if limit is not None and inputs.shape[1] + max_new_tokens > limit and fit_context and inputs.shape[1] < limit:
            max_new_tokens = limit - inputs.shape[1]
        if limit is not None and inputs.shape[1] + max_new_tokens > limit:
            raise SchemaError(
                f"the prompt is {inputs.shape[1]} tokens and up to {max_new_tokens} more were asked for; this LM reads "
                f"at most {limit} tokens: shorten the prompt or ask for fewer new tokens"
            )
        kwargs: dict[str, Any] = dict(
            inputs_embeds=inputs,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            use_cache=use_cache,
            do_sample=do_sample,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            **extra,
        )
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:  # the checkpoint's own sampling defaults would only warn under greedy decoding
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if num_beams > 1:
            # Each row keeps the num_beams likeliest partial replies; a finished reply's score is its summed
            # log-probability over its length (length_penalty 1, transformers' default), and the best one is returned.
            kwargs.update(num_beams=num_beams, num_return_sequences=1, early_stopping=True)
        if self.stop_strings:
            kwargs.update(stop_strings=self.stop_strings, tokenizer=self.tokenizer)
        return kwargs

    @torch.no_grad()
    def generate(
        self,
        batch: ModalityBatch | None,
        prompts: Sequence[str | Sequence[Message]],
        *,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        use_cache: bool = True,
        num_beams: int = 1,
    ) -> list[str]:
        """One reply per prompt (and media row), batched.

        ``use_cache=False`` turns the KV cache off: every step recomputes the whole sequence
        (slow; for speed comparisons). ``num_beams`` > 1: beam search (what captioning systems are
        scored with) instead of greedy decoding; it costs about ``num_beams`` times the compute.
        """
        kwargs = self._generate_kwargs(
            batch, prompts, max_new_tokens, do_sample, temperature, top_p, use_cache, num_beams=num_beams
        )
        out = self.lm.generate(**kwargs)
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [trim_reply(t, self.stop_strings) for t in texts]

    def stream(
        self,
        batch: ModalityBatch | None,
        prompt: str | Sequence[Message],
        *,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        use_cache: bool = True,
        fit_context: bool = False,
        num_beams: int = 1,
    ) -> StreamedReply:
        """Pieces of one reply as they are generated; joined, they equal :meth:`generate`'s reply.

        The prompt is assembled (and the media encoded) now, so its token count and a prompt
        too long for the LM are known before the first piece; generation starts on the first
        ``next``. Closing the reply early (a client that went away) stops the generation.
        ``fit_context``: ``max_new_tokens`` is an upper bound, lowered to what the LM's context
        leaves after the prompt (rather than an error). Streaming is greedy or sampled only: beam
        search does not know its reply until the end, so ``num_beams`` > 1 is an error here.
        """
        if num_beams != 1:
            raise SchemaError(
                f"num_beams={num_beams!r}: beam search cannot stream (the best reply is known only at the end); "
                "use generate() for beam search, or num_beams=1 to stream"
            )
        with torch.no_grad():
            kwargs = self._generate_kwargs(
                batch, [prompt], max_new_tokens, do_sample, temperature, top_p, use_cache, fit_context
            )
        return StreamedReply(self.lm, self.tokenizer, kwargs, self.stop_strings)


def max_positions(lm: nn.Module) -> int | None:
    """The longest sequence the LM's position scheme covers, as its config states it (None: unstated)."""
    config = getattr(lm, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


class _Cancelled:
    """A stopping criterion that ends every row once ``event`` is set (transformers checks it after each token)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Tensor, scores: Any, **kwargs: Any) -> Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class StreamedReply:
    """One reply, piece by piece (iterate it), with its token counts; :meth:`close` stops the generation.

    ``prompt_tokens``: the mixed sequence the LM reads (text and media tokens). ``reply_tokens``:
    tokens generated so far, the stop token included. ``hit_limit``: the reply ran into
    ``max_new_tokens`` rather than ending by itself.
    """

    def __init__(self, lm: nn.Module, tokenizer: Any, kwargs: dict[str, Any], stop_strings: Sequence[str]) -> None:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        counter = self

        class Streamer(TextIteratorStreamer):
            def put(self, value: Tensor) -> None:
                prompt = self.skip_prompt and self.next_tokens_are_prompt
                super().put(value)
                if not prompt:
                    counter.reply_tokens += int(value.numel())

        self.prompt_tokens = int(kwargs["attention_mask"].sum())
        self.max_new_tokens = int(kwargs["max_new_tokens"])
        self.reply_tokens = 0
        self._cancel = threading.Event()
        self._streamer = Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._kwargs = dict(kwargs, streamer=self._streamer, stopping_criteria=StoppingCriteriaList([_Cancelled(self._cancel)]))
        self._lm, self._stops = lm, stop_strings
        self._pieces = self._run()

    @property
    def hit_limit(self) -> bool:
        return self.reply_tokens >= self.max_new_tokens

    def __iter__(self) -> StreamedReply:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        self._cancel.set()
        self._pieces.close()

    def _run(self) -> Iterator[str]:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.no_grad():
                    self._lm.generate(**self._kwargs)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)
                self._streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        reply = ReplyStream(self._stops)
        try:
            for piece in self._streamer:
                if out := reply.push(piece):
                    yield out
        finally:  # also when the consumer stops early: the generation ends after its current token
            self._cancel.set()
            worker.join()
        if errors:
            raise errors[0]
        if out := reply.close():
            yield out
