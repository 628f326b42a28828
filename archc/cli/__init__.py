"""The command line, the one place that prints and sets exit codes.

`main.py` is the entry point (with the typer-free path for a plain `archc check`), `app.py`
the typer app, `common.py` what every verb shares, and each other module is one verb: its
typer command, registered by `app.py`. Kept empty so that `archc check` imports nothing
it does not use.
"""
