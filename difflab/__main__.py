from difflab.cli.entry import main

main()
