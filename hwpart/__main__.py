import sys

from hwpart.entry import main

sys.exit(main())
