"""``cals-bench train cals-context``: train the CALS context predictor's head (stage 1 of CALS).

``cals-bench train cals --config cals-cpu`` (stage 2) then reads the head file named by
``model.context_head``. ``cals-bench train seeds`` runs a config under several seeds.
"""

from __future__ import annotations

import json

import click


@click.command("cals-context")
@click.option(
    "--data-root", type=click.Path(), required=True, help="Folder holding utkface/, covid-cxr-256/, bsds500/."
)
@click.option("--out", type=click.Path(file_okay=False), default="runs/cals/context", show_default=True)
@click.option(
    "--per-context", default=400, show_default=True, help="Training images per context (faces subsampled)."
)
@click.option(
    "--crop",
    default=128,
    show_default=True,
    help="Size of the extra random crop per image (the training crop).",
)
@click.option("--epochs", default=300, show_default=True, help="Full-batch Adam epochs of the linear head.")
@click.option(
    "--test-per-context",
    default=0,
    show_default=True,
    help="Evaluate on at most this many test images per context (seeded hash order; 0 = the whole test split).",
)
@click.option(
    "--views",
    default="full,crop",
    show_default=True,
    help="Test views: full (256x256 images) and/or crop (one training-size crop of each).",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation record as JSON.")
def context_command(data_root, out, per_context, crop, epochs, test_per_context, views, seed, as_json):
    """Train the context predictor's head on the train splits (low-light inputs), evaluate on the test splits.

    Writes <out>/context_head.pt (what model.context_head names) and <out>/context_eval.json (accuracy and
    confusion matrix on the test split: full 256x256 images and training-size crops).
    """
    from cals_bench.reference_models.cals.context import CONTEXTS, HeadSettings, train_head

    chosen = tuple(v.strip() for v in views.split(",") if v.strip())
    if not chosen or set(chosen) - {"full", "crop"}:
        raise click.BadParameter(f"{views!r}: give full and/or crop", param_hint="--views")
    settings = HeadSettings(
        per_context=per_context,
        crop=crop,
        epochs=epochs,
        seed=seed,
        test_per_context=test_per_context,
        test_views=chosen,
    )
    record = train_head(data_root, out, settings, log=click.echo)
    if as_json:
        click.echo(json.dumps(record, indent=1))
        return
    for view in chosen:
        r = record[f"test_{view}"]
        click.echo(
            f"\ntest split ({view}): accuracy {r['accuracy']:.4f}, balanced {r['balanced_accuracy']:.4f}, n {r['n']}"
        )
        click.echo(f"{'true / predicted':<18}" + "".join(f"{c:>10}" for c in CONTEXTS))
        for c, row in zip(CONTEXTS, r["confusion"]):
            click.echo(f"{c:<18}" + "".join(f"{v:>10}" for v in row))
    click.echo(f"\nhead: {out}/context_head.pt  evaluation: {out}/context_eval.json")
