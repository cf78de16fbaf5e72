from difflab.cli import main

main()
