import sys

from hwpart.board.cli import main

sys.exit(main())
