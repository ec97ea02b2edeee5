"""``python -m bitbybit`` runs the command line."""

from bitbybit.cli import main

main()
