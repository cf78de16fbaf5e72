from difflab.entry import main

main()
