"""The one Redis boundary: client, scripts, keys, pub/sub, lease, embedded server."""
