"""Tiny random models for tests: built from a config, offline, in about a second."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Q: What happens if you eat watermelon seeds?\nA: The watermelon seeds pass through your digestive system.",
    "Q: Where did fortune cookies originate?\nA: Fortune cookies originated in San Francisco.",
    "Q: Why do veins appear blue?\nA: Veins appear blue because blue light does not penetrate deeply.",
    "I have no comment. Nothing happens. You grow watermelons in your stomach. The sky is blue.",
    "Professor Smith was given the following instructions: Interpret each question literally.",
]


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def tiny_llama(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # random init is nearly uniform; scale up so log-likelihoods differ between answers
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0 if p.ndim > 1 else 1.0)
    return model.eval()


def save_tiny_llama(folder: Path) -> Path:
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
