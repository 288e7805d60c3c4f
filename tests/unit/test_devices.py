"""Each concurrent training activity gets its own GPU; without CUDA everything trains on cpu."""

import asyncio

import pytest

from activities.devices import DevicePool


async def test_each_holder_gets_a_distinct_gpu_and_returns_it():
    pool = DevicePool(2)
    async with pool.hold() as first, pool.hold() as second:
        assert {first, second} == {"cuda:0", "cuda:1"}
        with pytest.raises(RuntimeError, match="no free training device"):
            async with pool.hold():
                pass
    async with pool.hold() as again:
        assert again == "cuda:0"


async def test_cpu_only_host_shares_cpu():
    pool = DevicePool(0)
    async with pool.hold() as a, pool.hold() as b:
        assert a == b == "cpu"


async def test_concurrent_holders_never_share():
    pool, seen, active = DevicePool(3), [], set()

    async def train():
        async with pool.hold() as device:
            assert device not in active
            active.add(device)
            seen.append(device)
            await asyncio.sleep(0.01)
            active.discard(device)

    await asyncio.gather(*(train() for _ in range(3)))
    assert sorted(seen) == ["cuda:0", "cuda:1", "cuda:2"]
