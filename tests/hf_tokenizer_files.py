"""Hugging Face tokenizer folders built locally with `tokenizers`, shaped like real models' files.

Each builder trains a small BPE on a seeded corpus and writes tokenizer.json + tokenizer_config.json
(with the model family's chat template) the way the family's hub repository has them:
SmolLM2 (GPT-2 byte-level, ChatML), Llama-3 (split regex + byte-level, BOS from the post-processor,
header/eot template), Qwen2.5 (NFC + split regex, ChatML with a default system turn) and
Llama-2/TinyLlama (SentencePiece-style BPE with byte fallback, add_bos_token, Zephyr template).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + "
    "'<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\") %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + "
    "'<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n")
LLAMA3_TEMPLATE = (
    "{{- bos_token }}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = "
    "messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n"
    "    {%- set system_message = \"\" %}\n{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + strftime_now(\"%d %b %Y\") + \"\\n\\n\" }}\n"
    "{{- system_message }}\n{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n"
    "    {%- if not (message.role in ['user', 'assistant']) %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported after the system message') }}\n"
    "    {%- endif %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n")
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")

_WORDS = ("the cat sat on a mat and the dog ran to the river while a small bird sang over the old mill "
          "def encode(text): return [ord(c) for c in text]  # code, numbers 12345 67890 3.14159 "
          "Über café naïve façade 東京 日本語 Привет мир emoji 🙂🚀 tabs\tand\nnew lines   spaces").split(" ")


def corpus(n_docs: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 40))) for _ in range(n_docs)]


def _train_byte_level(pre_tokenizer, specials: list[str], vocab_size: int, normalizer=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    return tok


def _write(folder: Path, tok, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return folder


def smollm2_folder(folder: Path, vocab_size: int = 700) -> Path:
    from tokenizers import pre_tokenizers, processors

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = _train_byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), specials, vocab_size)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return _write(folder, tok, {
        "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "add_prefix_space": False,
        "clean_up_tokenization_spaces": False, "model_max_length": 8192, "chat_template": SMOLLM2_TEMPLATE})


def qwen_folder(folder: Path, vocab_size: int = 700) -> Path:
    from tokenizers import Regex, normalizers, pre_tokenizers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = _train_byte_level(pre, specials, vocab_size, normalizer=normalizers.NFC())
    return _write(folder, tok, {
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "errors": "replace", "split_special_tokens": False,
        "clean_up_tokenization_spaces": False, "model_max_length": 32768, "chat_template": QWEN_TEMPLATE})


def llama3_folder(folder: Path, vocab_size: int = 700) -> Path:
    from tokenizers import Regex, pre_tokenizers, processors

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = _train_byte_level(pre, specials, vocab_size)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return _write(folder, tok, {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
        "clean_up_tokenization_spaces": True, "model_max_length": 131072, "chat_template": LLAMA3_TEMPLATE})


def llama2_folder(folder: Path, vocab_size: int = 600) -> Path:
    """SentencePiece-style BPE as TinyLlama's tokenizer.json: Prepend/Replace normalizer, byte fallback."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    spec = json.loads(tok.to_str())
    trained = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece, _ in trained:
        vocab.setdefault(piece, len(vocab))
    spec["model"].update(vocab=vocab, byte_fallback=True, fuse_unk=True, unk_token="<unk>")
    spec["added_tokens"] = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for i, t in enumerate(["<unk>", "<s>", "</s>"])]
    spec["pre_tokenizer"] = None
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1",
                                                       special_tokens=[("<s>", 1)])
    return _write(folder, tok, {
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
        "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None, "legacy": False,
        "clean_up_tokenization_spaces": False, "model_max_length": 2048, "chat_template": ZEPHYR_TEMPLATE})


BUILDERS = {"smollm2": smollm2_folder, "qwen": qwen_folder, "llama3": llama3_folder, "llama2": llama2_folder}


def real_checkpoint(root: Path, family: str = "smollm2", *, with_tokenizer: bool = True) -> Path:
    """A checkpoint as importing a real model gives one: a random tiny transformers Llama (seeded) through
    `import_hf`, with the family's tokenizer files in its tokenizer/ folder (model.json kind "hf")."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.model.hf import import_hf
    from core.tokenizer import load_tokenizer

    tok_dir = BUILDERS[family](root / f"{family}-tokenizer")
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.n_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)
    LlamaForCausalLM(cfg).save_pretrained(root / f"{family}-hf")
    out = root / f"{family}-ckpt" if with_tokenizer else root / f"{family}-bare"
    return import_hf(root / f"{family}-hf", out, tokenizer=tok_dir if with_tokenizer else None)
