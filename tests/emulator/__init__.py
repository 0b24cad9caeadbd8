"""The mysocket REST API emulator (api_emulator.py) and its pytest harness."""
from .harness import Emulator  # noqa: F401
