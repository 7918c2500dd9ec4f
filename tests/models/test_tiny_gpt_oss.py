import hashlib
import json

import pytest

from xpdctl.errors import ExecutionError, InputError
from xpdctl.models import BUILDERS, ensure_model


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny"
    assert ensure_model("tiny-gpt-oss", path) is True
    return path


def digests(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_architecture_is_gpt_oss_with_a_window_shorter_than_test_prompts(built):
    config = json.loads((built / "config.json").read_text())
    assert config["architectures"] == ["GptOssForCausalLM"]
    assert config["layer_types"] == ["sliding_attention", "full_attention"] * 2
    assert config["sliding_window"] == 32
    assert (config["num_local_experts"], config["num_experts_per_tok"]) == (4, 2)
    assert (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (
        128, 4, 2, 32)
    assert config["vocab_size"] == 1024
    assert config["dtype"] == "bfloat16"


def test_tokenizer_round_trips_text_and_has_a_chat_template(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    text = "The river runs under the bridge: 12345 tokens, prefill -> decode!"
    ids = tok(text)["input_ids"]
    assert max(ids) < 1024
    assert tok.decode(ids) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|start|>user<|message|>hi<|end|><|start|>assistant<|message|>"


def test_build_is_deterministic(built, tmp_path):
    again = tmp_path / "again"
    ensure_model("tiny-gpt-oss", again)
    assert digests(again) == digests(built)


def test_existing_model_is_not_rebuilt(built):
    before = digests(built)
    assert ensure_model("tiny-gpt-oss", built) is False
    assert digests(built) == before


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def half_build(dest):
        dest.mkdir(parents=True)
        (dest / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setitem(BUILDERS, "half", half_build)
    with pytest.raises(ExecutionError, match="disk full"):
        ensure_model("half", tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock"]


def test_leftover_of_a_killed_build_is_discarded(tmp_path):
    (tmp_path / ".m.building").mkdir()
    (tmp_path / ".m.building" / "model.safetensors").write_text("truncated")
    ensure_model("tiny-gpt-oss", tmp_path / "m")
    assert not (tmp_path / ".m.building").exists()
    assert (tmp_path / "m" / "model.safetensors").stat().st_size > 1_000_000


def test_unknown_builder_names_the_known_ones(tmp_path):
    with pytest.raises(InputError, match="tiny-gpt-oss"):
        ensure_model("huge-model", tmp_path / "m")


def test_the_model_folder_carries_the_reasoning_parser_its_engines_load(built, tmp_path):
    """Engines on other hosts and in containers see the model's folder, not xpdctl's tree: the plugin
    vLLM is told to load is a file of that folder, and a folder built before it was carried gets it."""
    from xpdctl.models import builder_vllm_args
    from xpdctl.models.tiny_gpt_oss import PLUGIN

    args = builder_vllm_args("tiny-gpt-oss", "/var/lib/xpdctl/models/tiny-gpt-oss")
    assert args[args.index("--reasoning-parser-plugin") + 1] == "/var/lib/xpdctl/models/tiny-gpt-oss/plain_reasoning.py"
    assert (built / PLUGIN.name).read_bytes() == PLUGIN.read_bytes()
    older = tmp_path / "older"
    older.mkdir()
    assert ensure_model("tiny-gpt-oss", older) is False  # present: not rebuilt, but completed
    assert (older / PLUGIN.name).read_bytes() == PLUGIN.read_bytes()
    assert builder_vllm_args(None, "/x") == []
