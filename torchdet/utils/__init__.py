"""Small utilities shared by every package above ``layers`` and ``structures``."""
