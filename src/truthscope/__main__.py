"""`python -m truthscope`: the same as the `truthscope` command."""

from truthscope.cli import main

main()
