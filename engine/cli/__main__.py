"""`python -m engine.cli ...` runs the `lci` command line."""

import sys

from engine.cli.main import main

sys.exit(main())
