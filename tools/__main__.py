import sys

from latticelock.tools.cli import main

sys.exit(main())
