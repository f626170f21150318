"""A tiny Qwen3-MoE checkpoint that the CPU vLLM serves in seconds, built here, downloading nothing.

Why a checkpoint of our own: the real one is 236 GB and may not be fetched at test time, and
random weights would answer noise that no test can predict. This one has the architecture the
operator serves (``Qwen3MoeForCausalLM``: 4 layers, 8 KV heads of dimension 128, 4 experts,
a 262144-token context) with weights chosen so that the output is known in advance:

* the residual stream carries only the current token: every attention output projection
  and every expert's down projection is zero (the other projections are random, so the
  attention and MoE kernels still compute), the embedding is one-hot;
* so the next token depends on the current token alone, through ``lm_head``: a small
  state machine. After the chat template's ``<think>\\n`` it writes ``think</think>OK`` and
  stops (``<|im_end|>``); after ``?`` it samples one of 32 letters (``CANDIDATES``, logits
  falling by 1/16 per rank: no ties, so top-k is observable) and writes ``?`` again;
* every value is exact in bfloat16 (the final norm makes the stream 16.0, the logits are
  multiples of 1/16), so greedy and top-k decisions cannot flip on rounding.

The KV cache costs 2 x 4 layers x 8 heads x 128 x 2 bytes = 16384 bytes per token, so a
budget of 1 GiB (``VLLM_CPU_KVCACHE_SPACE=1``) holds about 65k tokens: the request of 262144
fails the way a GPU without room for the KV cache fails. There is no generation_config.json
sampling block, so sampling defaults can only come from ``--override-generation-config``.

The checkpoint is cached under the user cache, keyed by the digest of this file (the recipe)
and the venv's lock file: ``ensure(python)`` builds it once with the CPU vLLM venv's Python
(torch, transformers, tokenizers), which runs this file as a script.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

LAYERS, KV_HEADS, HEAD_DIM, EXPERTS = 4, 8, 128, 4
HIDDEN = 256
"""Wide enough for a one-hot state per designed token; RMSNorm of a one-hot is sqrt(256) = 16."""
MAX_POSITIONS = 262144
KV_BYTES_PER_TOKEN = 2 * LAYERS * KV_HEADS * HEAD_DIM * 2
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Control tokens (skipped when decoding), as in Qwen3."""
MARKUP = ["<think>", "</think>", "<tool_call>", "</tool_call>"]
"""Added tokens that stay in the text, as in Qwen3 (the hermes tool parser needs the last two)."""
EOS = "<|im_end|>"
REASONING, ANSWER = "think", "OK"
"""What the model writes after the generation prompt: REASONING</think>ANSWER, then EOS."""
SAMPLER_PROMPT = "?"
CANDIDATES = "ABCDEFGHIJLMNPQRSTUVWXYZabcdefgj"
"""Sampled after SAMPLER_PROMPT, most likely first (none of the chain's letters)."""
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
"""Qwen3-Thinking-2507's shape: the generation prompt opens the thinking, the model closes it."""
HERE = Path(__file__).resolve()
LOCK_FILE = HERE.with_name("requirements.lock")


def candidate_logit(rank: int) -> float:
    """The logit of the candidate of `rank` after SAMPLER_PROMPT (exact in bfloat16)."""
    return 6.0 - rank / 16


def recipe_digest() -> str:
    """What the checkpoint is made from: this file and the library versions that write it."""
    digest = hashlib.sha256(HERE.read_bytes())
    digest.update(LOCK_FILE.read_bytes())
    return digest.hexdigest()[:12]


def cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "qwen-operator" / f"tiny-qwen3-moe-{recipe_digest()}"


def ensure(python: Path) -> Path:
    """The checkpoint directory, built with `python` (the CPU vLLM venv's) unless cached."""
    final = cache_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "config.json").is_file():
            return final
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "TRANSFORMERS_"))}
        env["HF_HUB_OFFLINE"] = "1"  # made from nothing: a download attempt is a bug
        subprocess.run([str(python), str(HERE), str(partial)], check=True, env=env)
        partial.rename(final)  # complete or absent: a killed build leaves only .partial
    return final


# -- the build: runs in the CPU vLLM venv (torch, transformers, tokenizers) -----------------


def _token_ids() -> dict[str, int]:
    """Byte-level vocabulary: the 256 byte symbols, then the added tokens."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet(), key=lambda s: _byte_of(s))
    vocab = {s: i for i, s in enumerate(symbols)}
    for token in SPECIAL + MARKUP:
        vocab[token] = len(vocab)
    return vocab


def _byte_of(symbol: str) -> int:
    """The byte a ByteLevel alphabet symbol stands for (GPT-2's printable remapping)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in printable]
    mapping = {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(others)}
    return mapping[symbol]


def _token(vocab: dict[str, int], text: str) -> int:
    """The id of one byte character or one added token."""
    if text in vocab:
        return vocab[text]
    from tokenizers.pre_tokenizers import ByteLevel

    (symbol,) = ByteLevel(add_prefix_space=False).pre_tokenize_str(text)[0][0]
    return vocab[symbol]


def _transitions(vocab: dict[str, int]) -> dict[str, dict[str, float]]:
    """The state machine: current token -> {next token: logit}; other tokens -> EOS."""
    chain = ["\n", *REASONING, "</think>", *ANSWER, EOS]
    table = {cur: {nxt: 16.0} for cur, nxt in itertools.pairwise(chain)}
    table[SAMPLER_PROMPT] = {c: candidate_logit(rank) for rank, c in enumerate(CANDIDATES)}
    for c in CANDIDATES:
        table[c] = {SAMPLER_PROMPT: 16.0}
    return table


def _tokenizer(out: Path, vocab: dict[str, int]) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_vocab = {s: i for s, i in vocab.items() if i < 256}
    tok = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token="<|endoftext|>", model_max_length=MAX_POSITIONS
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def _weights(model: object, vocab: dict[str, int]) -> None:
    import torch

    state = dict(model.named_parameters())  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for name, param in state.items():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif "o_proj" in name or "down_proj" in name:
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
        table = _transitions(vocab)
        dims = {cur: d + 1 for d, cur in enumerate(table)}  # dim 0: every other token
        embed = state["model.embed_tokens.weight"]
        embed.zero_()
        for token_id in range(embed.shape[0]):
            embed[token_id, 0] = 1.0
        for cur, dim in dims.items():
            row = _token(vocab, cur)
            embed[row].zero_()
            embed[row, dim] = 1.0
        head = state["lm_head.weight"]
        head.fill_(-1.0)  # logit -16 everywhere (the stream is 16.0 after the final norm) ...
        head[_token(vocab, EOS), 0] = 1.0  # ... but EOS after any undesigned token
        for cur, nexts in table.items():
            for nxt, logit in nexts.items():
                head[_token(vocab, nxt), dims[cur]] = logit / 16


def build(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen3MoeConfig, Qwen3MoeForCausalLM

    vocab = _token_ids()
    eos = vocab[EOS]
    config = Qwen3MoeConfig(
        vocab_size=len(vocab), hidden_size=HIDDEN, intermediate_size=256, moe_intermediate_size=64,
        num_hidden_layers=LAYERS, num_attention_heads=KV_HEADS, num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM, num_experts=EXPERTS, num_experts_per_tok=2, norm_topk_prob=True,
        max_position_embeddings=MAX_POSITIONS, rope_parameters={"rope_type": "default", "rope_theta": 5e6},
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=eos, pad_token_id=vocab["<|endoftext|>"],
        dtype="bfloat16",
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(config).to(torch.bfloat16)
    _weights(model, vocab)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=config.pad_token_id)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    _tokenizer(out, vocab)
    (out / "recipe.json").write_text(json.dumps({"digest": recipe_digest(), "vocab": len(vocab)}) + "\n")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
