"""The tiny chat model ``mlserve init`` creates for the local LLM endpoint.

Nothing is downloaded: a byte-level BPE tokenizer is trained on the spot (``tokenizers``) on a
small bundled text of support tickets and their one-line summaries (``llm_corpus.txt``), and a
two-layer Llama-architecture causal LM (about 0.1 M parameters) is trained on it for a few
hundred steps on the CPU, with fixed seeds and one thread, so that greedy decoding gives the
same text on every run. It writes what ``transformers serve`` loads (``config.json``,
``model.safetensors``, the tokenizer with a chat template, ``generation_config.json``).

Two versions whose generations differ: ``v1`` and ``v2`` use different seeds and training
lengths (different weights, so different greedy continuations for most prompts). An A/A pair
is two manifest versions with the same ``model_uri``.

The model is about saying *something* deterministic, token by token, at a small CPU cost per
token (a few milliseconds): it is a real causal LM served by a real server, not a good one.
"""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

from mlserve.errors import MlserveError

SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
VOCAB_SIZE = 384
CONTEXT = 256
# role tokens open each message, <|eos|> closes it; the assistant turn is left open for generation
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# version -> (seed, training steps)
VERSIONS = {"v1": (20261123, 300), "v2": (20261124, 120)}
MAX_NEW_TOKENS = 24
MISSING = (
    "creating the local chat model needs torch, transformers and tokenizers "
    "(pip install 'mlserve[llm]'; torch==2.13.0 is the CPU build)"
)


def corpus() -> list[tuple[str, str]]:
    text = (resources.files("mlserve.scaffold") / "llm_corpus.txt").read_text(encoding="utf-8")
    pairs = []
    for line in text.splitlines():
        if "|" in line:
            ticket, summary = (p.strip() for p in line.split("|", 1))
            pairs.append((ticket, summary))
    return pairs


def prompts() -> list[str]:
    """Prompts for load tests: the tickets of the corpus."""
    return [ticket for ticket, _ in corpus()]


def available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "tokenizers"))


def _tokenizer(out: Path) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [f"{t} {s}" for t, s in corpus()]
    tok.train_from_iterator(lines * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        model_max_length=CONTEXT,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    return fast


def _examples(tokenizer: object) -> list[list[int]]:
    rows = []
    for ticket, summary in corpus():
        text = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": ticket}, {"role": "assistant", "content": summary}],
            tokenize=False,
        )
        rows.append(tokenizer("<|bos|>" + text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
    return rows


def create_model(out: Path, version: str) -> list[str]:
    """Train one version into ``out``; return the files written (relative to ``out``)."""
    try:
        import torch
        from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise MlserveError(f"{MISSING} ({exc})") from None
    hf_logging.disable_progress_bar()
    seed, steps = VERSIONS[version]
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same floating-point sums on every machine
    try:
        torch.manual_seed(seed)
        rng = random.Random(seed)
        tokenizer = _tokenizer(out)
        config = LlamaConfig(
            vocab_size=len(tokenizer),  # type: ignore[arg-type]
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=CONTEXT,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
            eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
            pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        )
        model = LlamaForCausalLM(config)
        rows = _examples(tokenizer)
        width = max(len(r) for r in rows)
        pad = int(tokenizer.pad_token_id)  # type: ignore[attr-defined]
        optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            batch = rng.sample(rows, 8)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in batch])
            labels = ids.clone()
            labels[ids == pad] = -100
            loss = model(input_ids=ids, attention_mask=(ids != pad).long(), labels=labels).loss
            optim.zero_grad()
            loss.backward()
            optim.step()
        model.eval()
        model.generation_config = GenerationConfig(
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
        )
        model.save_pretrained(str(out), safe_serialization=True)
    finally:
        torch.set_num_threads(threads)
    (out / "mlserve-model.json").write_text(
        json.dumps({"version": version, "seed": seed, "steps": steps, "parameters": model.num_parameters()}) + "\n",
        encoding="utf-8",
    )
    return sorted(str(p.relative_to(out)) for p in out.iterdir() if p.is_file())


# Training is deterministic (fixed seeds, one thread), so a process that runs `init` more than
# once (the test suite, a notebook) trains each version once and writes the same bytes again.
_TRAINED: dict[str, dict[str, bytes]] = {}


def create_models(models_dir: Path, endpoint: str = "chat") -> list[str]:
    """``models/chat/v1`` and ``models/chat/v2``; returns project-relative paths."""
    written: list[str] = []
    for version in VERSIONS:
        out = models_dir / endpoint / version
        files = _TRAINED.get(version)
        if files is None:
            names = create_model(out, version)
            _TRAINED[version] = {n: (out / n).read_bytes() for n in names}
        else:
            out.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (out / name).write_bytes(data)
            names = sorted(files)
        written.extend(str((out / name).relative_to(models_dir.parent)) for name in names)
    return written
