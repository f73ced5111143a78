"""The ``turnout`` command's subcommands (see :mod:`turnout.cli`); imported only when one runs."""
