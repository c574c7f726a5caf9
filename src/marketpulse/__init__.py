"""marketpulse."""
