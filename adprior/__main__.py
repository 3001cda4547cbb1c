"""``python -m adprior`` = the ``adprior`` command."""

from adprior.cli import main

main()
