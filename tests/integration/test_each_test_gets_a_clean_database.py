from redis.asyncio import Redis


async def test_each_test_gets_a_clean_database_part1(redis_client: Redis) -> None:
    assert await redis_client.dbsize() == 0
    await redis_client.set("leftover", "1")


async def test_each_test_gets_a_clean_database_part2(redis_client: Redis) -> None:
    assert await redis_client.dbsize() == 0
