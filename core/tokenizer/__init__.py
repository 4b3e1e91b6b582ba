"""Tokenizers: tiktoken built-ins, a BPE trained on the corpus, real models' HF ones, inspection, chat templates.

Our tokenizers are a `tiktoken.Encoding` inside `Tokenizer`; real models' Hugging Face tokenizers
are `HFTokenizer` (the `tokenizers` library, with the model's Jinja chat template); `load_tokenizer`
reads either from a folder. `tokenizer_for(preset)` is how the other stages get the one a preset
means (training and caching a BPE on first use).
"""

from core.tokenizer.chat import CHAT_TEMPLATES, ROLES, ChatTemplate
from core.tokenizer.encodings import (
    BUILTIN_ENCODINGS,
    ENDOFTEXT,
    EncodingUnavailable,
    Tokenizer,
    get_tokenizer,
    is_saved_tokenizer,
    load_tokenizer,
)
from core.tokenizer.hf import HFTokenizer
from core.tokenizer.protocol import ChatFormat, TextTokenizer
from core.tokenizer.inspect import (
    CompressionRow,
    Span,
    TokenStats,
    VocabEntry,
    compare,
    compression_table,
    find_tokens,
    format_compression_table,
    format_spans_ansi,
    spans,
    stats,
    vocab_entry,
    vocab_page,
)
from core.tokenizer.cache import tokenizer_dir, tokenizer_for, tokenizer_key
from core.tokenizer.train import MAX_VOCAB, train_bpe

__all__ = [
    "BUILTIN_ENCODINGS", "CHAT_TEMPLATES", "ChatFormat", "ENDOFTEXT", "MAX_VOCAB", "ROLES", "ChatTemplate", "CompressionRow",
    "EncodingUnavailable", "HFTokenizer", "Span", "TokenStats", "Tokenizer", "TextTokenizer", "TrainingStopped", "VocabEntry", "compare",
    "compression_table", "find_tokens", "format_compression_table", "format_spans_ansi", "get_tokenizer",
    "is_saved_tokenizer", "load_tokenizer", "spans", "stats", "tokenizer_dir", "tokenizer_for", "tokenizer_key", "train_bpe", "vocab_entry", "vocab_page",
]
