"""The ``tabloop`` command line: ``app`` is the Typer application, ``boundary`` turns errors into one line."""
