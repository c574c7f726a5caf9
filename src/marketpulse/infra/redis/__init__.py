"""The one Redis boundary (``client.RedisClient``): scripts, keys, pub/sub, lease, embedded
server. Redis errors become ``RedisUnavailable`` here and nowhere else."""
