"""``python -m utils.faces score|leaderboard ...``: the competition's scorer (see scoring)."""

import sys

from utils.faces.scoring import main

sys.exit(main())
