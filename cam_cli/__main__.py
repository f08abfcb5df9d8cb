from cam_cli.cli import main

main()
