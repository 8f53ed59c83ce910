"""Loaded by every Python process with tests/sky_standin on PYTHONPATH (tests/test_sky_standin.py
starts `ft launch` and `ft jobs ended` so): with FT_SKY_STANDIN set, SkyPilot's managed-jobs
SDK calls are answered by tests/sky_standin/skyjobs.py instead of an API server."""

import os

if os.environ.get("FT_SKY_STANDIN"):
    import skyjobs

    skyjobs.install()
