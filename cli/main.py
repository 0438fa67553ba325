import click


@click.group()
def cli() -> None:
    """pic: crop suggestions in your own style."""
