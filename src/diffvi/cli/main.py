"""The ``diffvi`` command: ``train`` (a group: ``train vae``, ``train ddvae``,
``train diffusion``, ``train cvdm``, ``train sbn``, ``train vaedgp``), ``evaluate``,
``embed`` (a group: ``embed RUN``, ``embed genotypes``, ``embed table``),
``simulate genotypes``, ``sample``, ``restore`` and ``demo``.

Each command group lives in its own module; this one only assembles them. Heavy imports happen
inside the commands, so ``diffvi --help`` stays quick.
"""

from typing import Annotated

import typer

from diffvi.cli.demo import demo_command
from diffvi.cli.embed import embed_app
from diffvi.cli.embed_genotypes import embed_genotypes
from diffvi.cli.embed_table import embed_table
from diffvi.cli.evaluate import evaluate_command
from diffvi.cli.restore import restore_command
from diffvi.cli.sample import sample_command
from diffvi.cli.simulate import simulate_app
from diffvi.cli.train import train_app
from diffvi.cli.train_cvdm import train_cvdm
from diffvi.cli.train_diffusion import train_diffusion
from diffvi.cli.train_sbn import train_sbn
from diffvi.cli.train_vaedgp import train_vaedgp

app = typer.Typer(
    name="diffvi",
    help="Variational inference with deep latent-variable models and diffusion models.\n\n"
    "Start with `diffvi demo` (VAEs and a DD-VAE on 8x8 digits, about 6 minutes on 2 CPU "
    "cores).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
)
train_app.command("diffusion")(train_diffusion)
train_app.command("cvdm")(train_cvdm)
train_app.command("sbn")(train_sbn)
train_app.command("vaedgp")(train_vaedgp)
app.add_typer(train_app, name="train")
app.command("evaluate")(evaluate_command)
embed_app.command("genotypes")(embed_genotypes)
embed_app.command("table")(embed_table)
app.add_typer(embed_app, name="embed")
app.add_typer(simulate_app, name="simulate")
app.command("sample")(sample_command)
app.command("restore")(restore_command)
app.command("demo")(demo_command)


def _version(value: bool) -> None:
    if value:
        from diffvi import __version__

        typer.echo(f"diffvi {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Variational inference with deep latent-variable models and diffusion models.

    Start with `diffvi demo` (VAEs and a DD-VAE on 8x8 digits, about 6 minutes on 2 CPU
    cores).
    """


if __name__ == "__main__":
    app()
