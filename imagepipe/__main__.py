"""``python -m imagepipe``: the command-line client (see ``imagepipe.cli``)."""
import sys

from imagepipe.cli import main

if __name__ == "__main__":
    sys.exit(main())
