"""Pure parts of the LLM path: text normalisation and redaction, bucket layout, the offline
sentence-embedding model, the tiny chat model's determinism, and the manifest's rules."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from mlserve.local.openai_proxy import TIME_BUCKETS, Embedder, normalise, redact, texts_agree
from tests.conftest import run_cli


def test_normalised_match_ignores_case_width_and_spacing_only() -> None:
    assert texts_agree("Refund  the\nsecond payment", "refund the second payment")
    assert texts_agree("ｆｕｌｌ width", "full width")
    assert not texts_agree("refund the second payment", "refund the first payment")
    assert normalise("  A\tB  ") == "a b"


def test_redaction_masks_long_tokens_numbers_and_addresses_and_truncates() -> None:
    text = "card 4111111111111111 key sk_live_abcdefghijklmnopqrstuvwxyz mail jo@example.com " + "x " * 200
    out = redact(text)
    assert "4111" not in out and "sk_live" not in out and "jo@example.com" not in out
    assert len(out) <= 160 and out.endswith("…")


def test_time_buckets_are_five_percent_apart_from_1ms_to_60s() -> None:
    assert TIME_BUCKETS[0] == 0.001 and 57 < TIME_BUCKETS[-1] <= 60.0
    ratios = [b / a for a, b in itertools.pairwise(TIME_BUCKETS)]
    assert all(1.049 < r < 1.051 for r in ratios)


@pytest.mark.slow  # loading torch and the model: about 10-20 s on a busy 2-core machine
def test_embedding_model_runs_offline_and_ranks_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = Embedder()

    async def run() -> tuple[float, float, float]:
        same = await emb.similarity("the parcel arrived late", "the parcel arrived late")
        close = await emb.similarity("the parcel arrived late", "my package was delivered after the due date")
        far = await emb.similarity("the parcel arrived late", "i cannot reset my password")
        return same, close, far

    same, close, far = asyncio.run(run())
    assert same > 0.999 and close > far and close - far > 0.1


@pytest.mark.slow  # trains v1 again: about 10 s
def test_chat_models_are_deterministic_and_differ(scaffolded: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def generate(model_dir: Path) -> str:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
        ids = tok.apply_chat_template(
            [{"role": "user", "content": "my card was charged twice for the same order"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
        return str(tok.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True))

    from mlserve.scaffold.llm import create_model

    v1 = generate(scaffolded / "models/chat/v1")
    again = create_model(tmp_path / "v1", "v1")
    assert "model.safetensors" in again and "tokenizer.json" in again
    assert generate(tmp_path / "v1") == v1  # trained again from the same seed: the same text
    assert generate(scaffolded / "models/chat/v2") != v1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('runtime = "transformers"', "endpoints.chat.protocol"),
        ('kind = "ttft"', "endpoints.fraud.rollout.metrics[1].kind: kind = 'ttft' measures token streams"),
        ('metric = "queue"', "endpoints.fraud.autoscaling.metric: 'queue' is one of vLLM's own metrics"),
    ],
)
def test_manifest_rejects_llm_settings_where_they_do_not_apply(project: Path, edit: str, message: str) -> None:
    path = project / "mlserve.toml"
    text = path.read_text()
    if edit.startswith("runtime"):
        text = text.replace(
            'runtime = "transformers"        # protocol', 'protocol = "v2"\nruntime = "transformers"  #', 1
        )
    elif edit.startswith("kind"):
        text = text.replace('kind = "latency"\nquantile = 0.99', 'kind = "ttft"\nquantile = 0.99', 1)
    else:
        text = text.replace('metric = "concurrency"\ntarget = 20', 'metric = "queue"\ntarget = 20', 1)
    path.write_text(text)
    res = run_cli("validate", cwd=project)
    assert res.exit_code == 2, res.output
    assert message in res.stderr, res.stderr
