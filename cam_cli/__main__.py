from cam_cli.cli.main import main

main()
