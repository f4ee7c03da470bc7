"""Tiny random Llama-style models and a tokenizer built with `tokenizers`, for tests and smoke runs.

Both are made in-process in about a second, so tests never need the Hub or SmolLM2.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "the movie was great and the actors were wonderful",
    "a terrible film with a boring plot and bad acting",
    "write a short review of a science fiction film about robots",
    "Human: how do I bake bread? Assistant: mix flour, water and yeast, then bake it.",
    "summarize the post: my cat knocks cups off the table every morning",
] * 20


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )


def _tiny_llama_config(vocab_size: int, **settings):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        attn_implementation="sdpa",
        **settings,
    )


def build_tiny_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(_tiny_llama_config(vocab_size, tie_word_embeddings=True)).eval()


def save_tiny_reward_model(path, num_labels: int = 1, seed: int = 0):
    """Write a tiny random sequence-classification model (a reward model when num_labels is
    1) and the tiny tokenizer as a Hugging Face folder at `path`."""
    from transformers import LlamaForSequenceClassification

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = _tiny_llama_config(
        len(tokenizer), num_labels=num_labels, pad_token_id=tokenizer.pad_token_id
    )
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_tiny_model(path, seed: int = 0):
    """Write a tiny model and its tokenizer as a Hugging Face folder at `path`."""
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer), seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# Preference data in three shapes about the same prompts, for training and multi-process tests.
PROMPTS = [
    "write a short review of a film",
    "how do I bake bread?",
    "summarize the post: my cat",
    "write a review of a science fiction film",
    "review a film about robots",
    "tell me about the movie",
    "a film about robots and actors",
    "what was the plot?",
]
GOOD = [
    "the movie was great and the actors were wonderful",
    "mix flour, water and yeast, then bake it.",
    "my cat knocks cups off the table",
    "wonderful robots and great actors",
    "great film",
    "the actors were wonderful",
    "great acting from every robot",
    "a wonderful plot",
]
BAD = [
    "a terrible film",
    "bad acting",
    "the plot was boring",
    "terrible and boring",
    "bad film",
    "boring",
    "bad robots",
    "terrible",
]


def write_preference_files(folder, num_prompts: int = len(PROMPTS)) -> dict:
    """paired, binary and scored (4 responses a prompt) JSONL files of the first prompts."""
    rows = list(zip(PROMPTS, GOOD, BAD, strict=True))[:num_prompts]
    shapes = {
        "paired": [{"prompt": p, "chosen": g, "rejected": b} for p, g, b in rows],
        "binary": [{"prompt": p, "completion": g, "label": True} for p, g, _ in rows]
        + [{"prompt": p, "completion": b, "label": False} for p, _, b in rows],
        "scored": [
            {"prompt": p, "responses": [g, b, f"{g} and {b}", "ok"], "scores": [9.0, 2.0, 5.0, 4.0]}
            for p, g, b in rows
        ],
    }
    files = {}
    for shape, shape_rows in shapes.items():
        files[shape] = Path(folder) / f"{shape}.jsonl"
        files[shape].write_text("".join(json.dumps(row) + "\n" for row in shape_rows))
    return files
