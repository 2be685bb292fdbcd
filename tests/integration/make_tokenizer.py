"""Train a small word-piece tokenizer and save it as a Hugging Face tokenizer directory.

bench_serving needs a tokenizer to count prompt tokens; production uses the model's own
from the staged weights, tests use this one since nothing can be fetched here. Runs with
the SGLang test venv's Python (it has `tokenizers` and `transformers`):

    python make_tokenizer.py <corpus.jsonl> <out_dir>
"""
import json
import sys

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, trainers
from transformers import PreTrainedTokenizerFast


def main(corpus: str, out_dir: str) -> None:
    with open(corpus, encoding="utf-8") as f:
        texts = [row["question"] + " " + row["answer"] for row in map(json.loads, f)]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=4000, special_tokens=["[UNK]", "[EOS]"])
    tokenizer.train_from_iterator(texts, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]",
                            eos_token="[EOS]").save_pretrained(out_dir)


if __name__ == "__main__":
    main(*sys.argv[1:])
