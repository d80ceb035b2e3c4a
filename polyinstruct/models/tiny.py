"""Tiny, fully local models and tokenizers for tests, examples and benches.

The Hugging Face Hub is unreachable on CI, so tests build a random
Llama-architecture model (2 layers, hidden 64) and a byte-level BPE tokenizer
trained here on a multilingual corpus. Both are deterministic for a given seed
and saved with ``save_pretrained`` so the real loading code path is exercised.
"""

from __future__ import annotations

import os
from pathlib import Path

# Short multilingual corpus so merges cover every script the tests use.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. Give three tips for staying healthy.",
    "Explain why the sky is blue. Write a short poem about the sea. What is 12 times 7?",
    "Le renard brun rapide saute par-dessus le chien paresseux. Donnez trois conseils.",
    "El rápido zorro marrón salta sobre el perro perezoso. ¿Cuál es la capital de España?",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Объясните, почему небо голубое.",
    "Бързата кафява лисица прескача мързеливото куче. Дайте три съвета за здраве.",
    "敏捷的棕色狐狸跳过了懒狗。请给出三个保持健康的建议。天空为什么是蓝色的？",
    "দ্রুত বাদামী শিয়াল অলস কুকুরের উপর লাফ দেয়। আকাশ কেন নীল?",
    "Den raske brune reven hopper over den late hunden. Hvorfor er himmelen blå?",
    "Der schnelle braune Fuchs springt über den faulen Hund. Nopea ruskea kettu.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # 5",
    "<|user|>\nHello!\n<|assistant|>\nHi, how can I help?</s>",
    "### Instruction:\nSummarize the text.\n\n### Input:\nA long text.\n\n### Response:\nA summary.",
    "[INST] Hello [/INST] Hi </s> <|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    "🙂 😀 👍 🎉 — “quotes” ‘single’ … naïve café résumé Ærø straße",
]

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
}
# Chat-control tokens that real models (SmolLM2, Qwen) register as special.
ADDITIONAL_SPECIAL = ["<|im_start|>", "<|im_end|>"]


def build_tiny_tokenizer(out_dir: str | os.PathLike | None = None, vocab_size: int = 1200,
                         extra_texts: list[str] | None = None):
    """Train a byte-level BPE tokenizer (the GPT-2/Llama-3/SmolLM2 family).

    Every byte is in the alphabet, so any Unicode text round-trips exactly.
    Template markers such as ``<|user|>`` are deliberately *not* special tokens:
    they tokenize as ordinary text, as they do for Tulu on a Llama vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(SPECIAL_TOKENS.values()) + ADDITIONAL_SPECIAL
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = _CORPUS * 4 + list(extra_texts or [])
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        additional_special_tokens=ADDITIONAL_SPECIAL,
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )
    fast.model_max_length = 2048
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(out_dir: str | os.PathLike, *, seed: int = 0, hidden_size: int = 64,
                     num_layers: int = 2, tokenizer=None):
    """Write a random tiny Llama (and its tokenizer) to ``out_dir``; return the path.

    About 16 MB in fp32 with the default tokenizer; 0.1-0.2 s per training step
    on a laptop CPU, which makes real end-to-end tests affordable.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def build_tiny_sentencepiece_tokenizer(out_dir: str | os.PathLike | None = None, vocab_size: int = 700):
    """Train a Llama-style SentencePiece (unigram) tokenizer offline and load it through transformers.

    Settings follow Llama-2: identity normalization, whitespace kept as is, a
    dummy-prefix "▁" on each encoded string, digits split and byte fallback, so
    any Unicode text is representable. Returned as the transformers Llama
    tokenizer (it adds BOS by default, like the real one). Saved with
    ``save_pretrained`` when ``out_dir`` is given.
    """
    import io
    import json
    import tempfile

    import sentencepiece as spm
    from transformers import AutoTokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 4), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        user_defined_symbols=ADDITIONAL_SPECIAL, hard_vocab_limit=False, minloglevel=2,
        num_threads=1, seed_sentencepiece_size=100_000,
    )
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "tokenizer.model").write_bytes(model.getvalue())
        config = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True,
                  "add_eos_token": False, "clean_up_tokenization_spaces": False,
                  "additional_special_tokens": ADDITIONAL_SPECIAL, "model_max_length": 2048, **SPECIAL_TOKENS}
        Path(tmp, "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
        tok = AutoTokenizer.from_pretrained(tmp)
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok
