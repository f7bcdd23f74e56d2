import sys

from lib_guided.cli import main

sys.exit(main())
