"""`glue-bench tasks` and `glue-bench models`: what the registry holds."""

from __future__ import annotations


def add_parsers(sub) -> None:
    sub.add_parser(
        "tasks",
        help="list the GLUE tasks",
        description="The GLUE tasks of the registry (tasks/*.toml): each one's type, number of texts, score, rows "
        "per split and the file the GLUE server takes. AX is never trained: each MNLI model predicts it.",
    ).set_defaults(func=cmd_tasks)
    sub.add_parser(
        "models",
        help="list the 24 BERT miniatures",
        description="The 24 BERT miniatures: each one's name, alias, layers, hidden size, heads, parameters and "
        "Hub id. --model takes these names, and also random:L-<layers>_H-<hidden> (random weights), a local "
        "folder, package:<module>/<folder> or a Hub id (glue-bench run --help).",
    ).set_defaults(func=cmd_models)


def cmd_tasks(args) -> int:
    import pandas as pd

    from glue_bench.inputs.tasks import registry

    rows = []
    for task in registry().values():
        rows.append(
            {
                "task": task.name,
                "type": "regression" if task.regression else f"{len(task.labels)} classes",
                "texts": len(task.hub_columns),
                "score": "+".join(task.score),
                "train": sum(s.rows for s in task.splits_with_role("train")) or f"(from {task.predicted_by})",
                "dev": " + ".join(str(s.rows) for s in task.splits_with_role("dev")),
                "test": " + ".join(str(s.rows) for s in task.splits_with_role("test")),
                "submission": ", ".join(s.submission for s in task.splits_with_role("test")),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_models(args) -> int:
    import pandas as pd

    from glue_bench.inputs import models

    named = {v: k for k, v in models.NAMED.items()}
    rows = [
        {
            "model": models.miniature_name(layers, hidden),
            "alias": named.get(models.miniature_name(layers, hidden), ""),
            "layers": layers,
            "hidden": hidden,
            "heads": hidden // 64,
            "parameters": f"{models.parameter_count(layers, hidden) / 1e6:.1f}M",
            "hub id": models.hub_id(layers, hidden),
        }
        for layers, hidden in models.all_miniatures()
    ]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0
