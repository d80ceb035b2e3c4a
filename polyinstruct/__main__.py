import sys

from polyinstruct.cli import main

sys.exit(main())
