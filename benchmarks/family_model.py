"""A random model of another family, in a folder, for speed benchmarks (benchmarks/speed.py --model FOLDER).

Speed does not depend on the weights, so random ones of the right shape serve; the tokenizers are the tests'
(tests/families.py: RoBERTa's a byte-level BPE trained on GLUE sentences, ELECTRA's the uncased WordPiece).

    python benchmarks/family_model.py roberta /tmp/roberta-shaped --data ../shared/glue_data
    python benchmarks/family_model.py electra-small /tmp/electra-small --data ../shared/glue_data
    python benchmarks/speed.py --data ../shared/glue_data --model /tmp/roberta-shaped --threads 1 \\
        --arms glue-bench,glue-bench+hf,trainer-dynamic

Shapes: roberta is RoBERTa's embeddings (50,265 tokens, 514 positions, one token type) on a 4-layer, 256-wide body
(BERT-Mini's, so that a CPU benchmark takes minutes); electra-small is ELECTRA-Small's (12 layers, hidden 256,
embeddings 128 wide and projected, 4 heads, feed-forward 1024, the uncased vocabulary).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SHAPES = {
    "roberta": {
        "vocab_size": 50265,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    },
    "electra-small": {
        "vocab_size": 30522,
        "embedding_size": 128,
        "hidden_size": 256,
        "num_hidden_layers": 12,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    },
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out")
    parser.add_argument("--data", required=True, help="the GLUE files (the BPE tokenizer trains on their sentences)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import families
    import torch
    import transformers

    family = "roberta" if args.shape == "roberta" else "electra"
    tokenizer = families.tokenizer(family, Path(args.data))
    config_class = transformers.RobertaConfig if family == "roberta" else transformers.ElectraConfig
    config = config_class(**SHAPES[args.shape], pad_token_id=tokenizer.pad_token_id, num_labels=2)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"wrote {args.out}: {args.shape}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
