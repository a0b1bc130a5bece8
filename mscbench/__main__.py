from mscbench.cli import main

main()
