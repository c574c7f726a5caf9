"""marketpulse.api."""
