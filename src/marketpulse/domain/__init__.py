"""marketpulse.domain."""
