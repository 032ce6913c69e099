from qwenkit.cli import main

main()
