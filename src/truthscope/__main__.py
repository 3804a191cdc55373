from truthscope.cli import main

main()
