import sys

from snnir.cli.main import main

sys.exit(main())
