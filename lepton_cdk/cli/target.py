"""`lepton target ...`: choose where to run: GPU instance types and regions, priced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .options import OutputFormat, number

app = typer.Typer(help="Choose where to run: GPU instance types and regions, priced.", no_args_is_help=True)


@app.command("recommend")
def target_recommend(
    gpu_memory_gib: Annotated[float, typer.Option("--gpu-memory-gib", parser=number(above=0), help="GPU memory the model needs, in GiB.")],
    clouds: Annotated[str | None, typer.Option("--clouds", help="Comma-separated clouds to consider (aws,gcp). Default: all in the catalog.")] = None,
    regions: Annotated[str | None, typer.Option("--regions", help="Comma-separated regions to consider. Default: all in the catalog.")] = None,
    data_location: Annotated[str | None, typer.Option("--data-location", help="Where the data lives now, CLOUD:REGION (e.g. aws:us-east-1).")] = None,
    data_gib: Annotated[float, typer.Option("--data-gib", parser=number(at_least=0),
                                            help="How much data must move there, in GB (2^30 bytes).")] = 0.0,
    spot: Annotated[bool, typer.Option("--spot", help="Rank by spot prices (estimates) instead of on-demand.")] = False,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="markdown or json.")] = OutputFormat.markdown,
    prices: Annotated[Path | None, typer.Option("--prices", help="A price catalog CSV to use instead of the shipped one.")] = None,
) -> None:
    """The cheapest GPU instance type and region meeting a memory need, with the data's egress included."""
    from lepton_cdk.review import candidate_to_dict, load_catalog, recommend, render_recommendation

    location = None
    if data_location is not None:
        cloud, sep, region = data_location.partition(":")
        if not sep or not cloud or not region:
            raise typer.BadParameter(f"--data-location {data_location!r}: use CLOUD:REGION, e.g. aws:us-east-1")
        location = (cloud, region)
    elif data_gib:
        raise typer.BadParameter("--data-gib needs --data-location (where the data lives now)")
    split = lambda text: [p.strip() for p in text.split(",") if p.strip()] if text else None  # noqa: E731
    candidates = recommend(load_catalog(prices), gpu_memory_gib=gpu_memory_gib, clouds=split(clouds), regions=split(regions),
                           data_location=location, data_gib=data_gib, pricing="spot" if spot else "on-demand")
    if output_format is OutputFormat.json:
        typer.echo(json.dumps([candidate_to_dict(c) for c in candidates], indent=2))
    else:
        typer.echo(render_recommendation(candidates, gpu_memory_gib=gpu_memory_gib))


# After the commands above, so `lepton --help` lists demo first.
