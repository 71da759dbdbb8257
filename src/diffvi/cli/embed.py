"""``diffvi embed``: a group whose default command (``diffvi embed RUN``, also ``diffvi embed
run RUN``) embeds a data set split with a trained model — latent codes, their plot, kNN accuracy
and latent NLL — whose ``genotypes`` command embeds genotype files
(:mod:`diffvi.cli.embed_genotypes`) and whose ``table`` command embeds a feature table such as
single-cell data (:mod:`diffvi.cli.embed_table`).

DDVI's evaluation protocol (``run.py::metrics_evaluate`` of topwasu/DDVI): ONE posterior sample
per image (not the posterior mean); kNN accuracy (k = 20) fitted on the train-split latents and
scored on the evaluated split's latents; latent NLL = −E_{z~p(z)} log q̂(z), q̂ a Gaussian KDE of
the evaluated latents, at 10,000 prior samples (2-D latents only, as in the paper): at samples of
the run's own training prior (``latent_nll``) and, for the paper's priors (pinwheel, swiss roll,
square), at the official code's own prior samples (``latent_nll_official``,
:func:`diffvi.distributions.official_prior_samples`: the paper's column).
"""

import functools
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from diffvi.cli.options import (
    DeviceOpt,
    FlushDenormalOpt,
    RunOrCheckpoint,
    ThreadsOpt,
    ensure_writable,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.utils.io import write_csv, write_json
from diffvi.utils.text import plural

NUM_PRIOR_SAMPLES = 10_000


class DefaultRunGroup(TyperGroup):
    """A command group that reads ``diffvi embed RUN ...`` as ``diffvi embed run RUN ...``:
    anything that is not a subcommand name (or ``--help``) goes to ``run``."""

    def resolve_command(self, ctx, args):  # noqa: D102 - click's hook
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


def embed_images(
    module, images, seed: int, batch_size: int, device, progress: bool = False, desc: str = ""
) -> Any:
    """One posterior sample per image: ``images [N, ...] -> [N, D]`` (float, on the CPU), with
    noise from a generator seeded with ``seed`` on ``device`` (same seed, same latents);
    ``progress`` shows a bar ``desc`` over the batches."""
    import torch

    from diffvi.evaluation.representation import embed_latents

    generator = torch.Generator(device=device).manual_seed(seed)
    return embed_latents(module.posterior, images, generator, batch_size, progress, desc)


def write_latents_csv(path: Path, latents, labels) -> Path:
    """``z1 … zD, label`` with one row per image."""
    header = [*(f"z{i + 1}" for i in range(latents.shape[1])), "label"]
    rows = ([*map(repr, z), int(y)] for z, y in zip(latents.tolist(), labels.tolist(), strict=True))
    return write_csv(path, header, rows)


@report_errors
def embed_command(
    run_or_checkpoint: RunOrCheckpoint,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for latents.csv, latents.png and metrics.json.", show_default=False
        ),
    ],
    dataset: Annotated[
        str | None,
        typer.Option(help="Data set to embed.", show_default="the run's data set"),
    ] = None,
    split: Annotated[str, typer.Option(help="Split to embed and score.")] = "test",
    knn_k: Annotated[int, typer.Option(min=1, help="Neighbours of the kNN classifier.")] = 20,
    clusters: Annotated[
        int,
        typer.Option(
            min=0, help="Fit a GMM with this many clusters to the latents and score it (0: skip)."
        ),
    ] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 500,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the posterior and prior samples.")] = 0,
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress bars and what is being done (on stderr).")
    ] = True,
) -> None:
    """Embed a data set split with a trained model's posterior (DDVI's protocol: one sample
    per image) and score the embedding.

    Writes OUT/latents.csv (columns z1..zD, label; one row per image), OUT/latents.png (the
    latents coloured by label; PCA when D > 2) and OUT/metrics.json. Prints the kNN accuracy
    (k = --knn-k, fitted on the train split's latents, scored on --split's) for labelled data,
    the clustering scores of a --clusters-component GMM fitted to the latents (purity,
    completeness, NMI; DDVI's clustering protocol), and for 2-D latents the latent NLL (a KDE
    of the latents at 10,000 prior samples). A run trained on a table (--data) embeds its
    held-out rows (--split test) or its training rows (train), standardised as in training.

    **Examples**

    ```
    diffvi embed runs/mnist-ddvae-pinwheel --out runs/mnist-ddvae-pinwheel/embedding
    diffvi embed runs/dd/checkpoints/last.ckpt --out emb --split train --seed 1
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    ensure_writable(out, folder=True)
    import torch

    from diffvi.data.image_files import load_images
    from diffvi.distributions import OFFICIAL_REFERENCE_PRIORS, official_prior_samples
    from diffvi.evaluation.plots import save_latent_scatter
    from diffvi.evaluation.representation import (
        clustering_scores,
        gmm_cluster,
        knn_accuracy,
        latent_nll,
    )
    from diffvi.objectives import OBJECTIVES
    from diffvi.training import load
    from diffvi.utils.runtime import resolve_device

    def note(message: str) -> None:
        if progress:
            typer.echo(message, err=True)

    torch_device = resolve_device(device)
    module = load(run_or_checkpoint, torch_device)
    if module.kind != "vae":
        raise ValueError(
            f"embed needs a VAE run; {run_or_checkpoint} holds a {module.kind!r} model"
        )
    if OBJECTIVES[module.config.objective].ddim_chain:
        module.posterior.sampler = "ddim"  # its latents are the deterministic DDIM map's
    name = dataset or module.config.dataset
    load_split = functools.partial(load_images, name, image_shape=module.config.event_shape)
    item, label_names = "image", None
    if name is None:  # trained on --data: a table's rows (train) and held-out rows (test)
        name, load_split, label_names = _own_data_splits(run_or_checkpoint, module.config)
        item = "row"
    images, labels = load_split(split, seed=seed)
    note(f"Embedding {plural(len(images), item)} of {name} ({split}), one sample each ...")
    latents = embed_images(
        module, images, seed, batch_size, torch_device, progress, f"embed {split}"
    )
    if latents.shape[1] < 2:
        raise ValueError(f"embed needs latents of dimension >= 2, got {latents.shape[1]}")
    out.mkdir(parents=True, exist_ok=True)
    write_latents_csv(out / "latents.csv", latents, labels)
    save_latent_scatter(
        latents, labels, out / "latents.png", title=f"{name} ({split}), one sample per {item}",
        names=label_names,
    )  # fmt: skip
    metrics: dict[str, Any] = {
        "model": str(run_or_checkpoint),
        "dataset": name,
        "split": split,
        "seed": seed,
        "num_points": int(latents.shape[0]),
        "latent_dim": int(latents.shape[1]),
        "prior": module.config.prior,
    }
    points = plural(latents.shape[0], "point")
    lines = [f"Wrote {out / 'latents.csv'} and {out / 'latents.png'} ({points})"]
    if bool((labels >= 0).all()):
        if split == "train":
            train_latents, train_labels = latents, labels
        else:
            train_images, train_labels = load_split("train", seed=seed)
            note(f"Embedding {plural(len(train_images), item)} of {name} (train) for kNN ...")
            train_latents = embed_images(
                module, train_images, seed + 1, batch_size, torch_device, progress, "embed train"
            )
        k = min(knn_k, train_latents.shape[0])
        acc = knn_accuracy(train_latents, train_labels, latents, labels, k=k)
        metrics.update(knn_accuracy=acc, knn_k=k)
        lines.append(f"kNN accuracy (k={k}, fit on train, scored on {split}): {acc:.4f}")
        if clusters:
            note(f"Fitting a {clusters}-component GMM to the latents ...")
            scores = clustering_scores(labels, gmm_cluster(latents, clusters, seed=seed))
            metrics.update(clusters=clusters, **scores)
            lines.append(
                f"GMM clustering ({plural(clusters, 'cluster')}): purity {scores['purity']:.4f}, "
                f"completeness {scores['completeness']:.4f}, NMI {scores['nmi']:.4f}"
            )
    else:
        lines.append("kNN accuracy: skipped (the data set has no labels)")
    if latents.shape[1] == 2:
        generator = torch.Generator().manual_seed(seed)
        prior = module.model.prior.to("cpu")
        with torch.no_grad():
            prior_samples = prior.sample((NUM_PRIOR_SAMPLES,), generator=generator)
        note(f"Latent NLL: a KDE of the latents at {NUM_PRIOR_SAMPLES} prior samples ...")
        nll = latent_nll(latents.double(), prior_samples.double())
        metrics.update(latent_nll=nll, num_prior_samples=NUM_PRIOR_SAMPLES)
        lines.append(
            f"Latent NLL (KDE of the latents at {NUM_PRIOR_SAMPLES} prior samples): {nll:.4f}"
        )
        if module.config.prior in OFFICIAL_REFERENCE_PRIORS:
            reference = official_prior_samples(
                module.config.prior, NUM_PRIOR_SAMPLES, torch.Generator().manual_seed(seed)
            )
            official = latent_nll(latents.double(), reference)
            metrics.update(latent_nll_official=official)
            lines.append(
                f"Latent NLL at {NUM_PRIOR_SAMPLES} of the official code's {module.config.prior} "
                f"samples (the paper's column): {official:.4f}"
            )
    write_json(out / "metrics.json", metrics)
    typer.echo("\n".join(lines))


def _own_data_splits(run: Any, config: Any) -> tuple[str, Any, list[str] | None]:
    """The name, split loader and class names (where its labels were names) of a run trained
    on ``--data``: a table's standardised rows as in training (``train``: the training rows;
    ``test``/``val``: the held-out rows)."""
    from diffvi.training.families.tables import build_table_data, uses_table

    if not uses_table(config):
        raise ValueError(
            f"{run} was trained on the images in {config.data}, not on a registered data set: "
            "pass --dataset"
        )
    data = build_table_data(config)
    splits = {"train": data.train_set, "test": data.val_set, "val": data.val_set}

    def load_split(split: str, seed: int = 0) -> tuple[Any, Any]:
        if split not in splits:
            raise ValueError(f"unknown split {split!r} for a table; valid: {list(splits)}")
        return tuple(splits[split].tensors)

    return Path(config.data).name, load_split, data.label_names


embed_app = typer.Typer(
    cls=DefaultRunGroup,
    help="Embed data in a latent space: `diffvi embed RUN` (a trained model on a data set "
    "split), `diffvi embed genotypes` (genotype files, any method) or `diffvi embed table` "
    "(CSV/TSV, Parquet, .npy or AnnData .h5ad, any method).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
embed_app.command("run")(embed_command)
