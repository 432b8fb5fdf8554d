"""A tiny random-weight causal LM (Llama) with a tokenizer trained in-process: hf-backend tests, no hub.

The byte-level BPE splits numbers into single digits (like Llama's), so identifiers 10..20 are multi-token
and the first-token mode meets the same limitation it would with a real Llama/Mistral teacher.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

TRAINING_TEXT = [
    "I will provide you with 20 passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: what is the price of water.",
    "Search Query: who are the public records. Rank the 20 passages above based on their relevance to the "
    "search query. All the passages should be included and listed using identifiers, in descending order of "
    "relevance. The output format should be [] > [], e.g., [4] > [2], Only respond with the ranking results, "
    "do not say any word or explain.",
    " > ".join(f"[{i}]" for i in range(1, 21)),
    "A chat between a curious user and an artificial intelligence assistant. USER: ASSISTANT:",
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query",
    "the a of to in and is are was what who how why when where which does do can for on with by from at as it",
    "0123456789 ( ) [ ] > < . , ; : ' \" - ?",
]


def tiny_causal_lm_dir(folder: Path, seed: int = 0, vocab_size: int = 400) -> Path:
    """Save a 2-layer Llama with random weights and a local BPE tokenizer (with a chat template) in ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(TRAINING_TEXT, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        model_max_length=8192,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
