from sppg_backup.cli import main

main()
