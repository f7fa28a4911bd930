"""Models and tokenizers glue-bench cannot fine-tune are refused before anything is queued: one line, exit 2, from
`run` and from a sweep, with nothing recorded. Each case is a folder built here from configs and tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from glue_bench import cli
from glue_bench.inputs.models import bundled_tokenizer, miniature_config

SMALL = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 128}


def _save(folder: Path, model, tokenizer) -> str:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def encoder_decoder(folder: Path) -> str:
    """A bert2bert EncoderDecoderModel: transformers has no sequence-classification model for it."""
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.BertConfig(**SMALL), transformers.BertConfig(**SMALL, is_decoder=True, add_cross_attention=True)
    )
    return _save(folder, transformers.EncoderDecoderModel(config=config), bundled_tokenizer())


def unknown_type(folder: Path) -> str:
    """A config.json whose model_type this transformers does not know."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "my-own-encoder", "hidden_size": 64}))
    return str(folder)


def gpt2_without_padding(folder: Path) -> str:
    """GPT-2: a sequence-classification head, but neither its tokenizer nor its config has a padding token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(["a few words", "of text"], trainers.BpeTrainer(vocab_size=300))
    tokenizer = transformers.GPT2TokenizerFast(tokenizer_object=tokenizer, eos_token="words", bos_token="words")
    config = transformers.GPT2Config(n_embd=64, n_layer=1, n_head=2, vocab_size=len(tokenizer), pad_token_id=None)
    return _save(folder, transformers.GPT2ForSequenceClassification(config), tokenizer)


def too_few_embeddings(folder: Path) -> str:
    """A BERT whose embeddings hold 1,000 tokens, with the 30,522-token uncased tokenizer."""
    config = miniature_config(2, 128)
    config.vocab_size = 1000
    return _save(folder, transformers.BertForSequenceClassification(config), bundled_tokenizer())


def no_pair_format(folder: Path) -> str:
    """A tokenizer without a separator or segment ids: RTE's two sentences would run together as one."""
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1, "a": 2, "b": 3}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]")
    config = transformers.BertConfig(**SMALL, vocab_size=4, pad_token_id=1)
    return _save(folder, transformers.BertForSequenceClassification(config), tokenizer)


CASES = {
    "encoder-decoder": (
        encoder_decoder,
        "transformers has no sequence-classification model for model_type 'encoder-decoder'",
    ),
    "unknown model_type": (unknown_type, "its model_type 'my-own-encoder' is not one transformers"),
    "no padding token": (gpt2_without_padding, "neither its tokenizer nor its config has a padding token"),
    "too few embeddings": (too_few_embeddings, "its tokenizer has 30,522 tokens but the model's embeddings hold 1,000"),
    "no pair format": (no_pair_format, "its tokenizer joins a sentence pair without a separator or segment ids"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_model_that_cannot_run_is_one_line_before_anything_is_queued(case, glue_data, tmp_path, capsys):
    build, expected = CASES[case]
    folder = build(tmp_path / "model")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    run = ["run", "--model", folder, "--task", "rte", "--batch-size", "16", "--lr", "1e-4", "--data", str(glue_data)]
    sweep = tmp_path / "bad.toml"
    sweep.write_text(
        f'models = ["{folder}"]\ntasks = ["rte"]\nepochs = 1\ndata = "{glue_data}"\nstorage = "{url}"\n'
        "[grid]\nbatch_size = [16]\nlr = [1e-4]\n"
    )
    for command in (run + ["--storage", url], ["sweep", str(sweep)], ["sweep", str(sweep), "--dry-run"]):
        capsys.readouterr()
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("glue-bench: error: ") and expected in err, err
    assert not Path(url.removeprefix("sqlite:///")).exists() or _trials(url) == 0  # nothing queued or recorded


def _trials(url: str) -> int:
    import optuna

    storage = optuna.storages.RDBStorage(url)
    return sum(s.n_trials for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
