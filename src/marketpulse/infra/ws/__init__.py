"""WebSocket plumbing shared by every socket: protocol, connection, origins."""
