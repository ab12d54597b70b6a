"""Command groups of the ``lepton`` CLI, one module per area. Each module builds a
typer app (or registers commands) and imports its heavy libraries inside the
command functions, so ``lepton --help`` stays fast. ``lepton_cdk.cli`` wires them in."""
