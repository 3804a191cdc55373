"""`python -m truthscope.cli`: the same as the `truthscope` command."""

from truthscope.cli import main

main()
