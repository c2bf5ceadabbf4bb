from cvtrain.cli.main import main

main()
