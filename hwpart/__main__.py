import sys

from hwpart.cli import main

sys.exit(main())
