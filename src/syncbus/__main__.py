"""`python -m syncbus` is the `syncbus` command."""

from syncbus.cli import main

main()
