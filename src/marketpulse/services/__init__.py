"""marketpulse.services."""
