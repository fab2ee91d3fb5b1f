from amfmedit.cli import main

main()
