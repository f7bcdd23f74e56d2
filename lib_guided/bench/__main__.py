import sys

from lib_guided.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
