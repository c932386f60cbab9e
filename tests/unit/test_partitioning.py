"""The publisher's murmur2 is Kafka's: equal to aiokafka's reference implementation on any input."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.publisher import murmur2, partition_for


@settings(max_examples=3000, derandomize=True)
@given(st.binary(max_size=200))
def test_murmur2_equals_the_reference(data: bytes) -> None:
    assert murmur2(data) == reference_murmur2(data)


@settings(max_examples=1000, derandomize=True)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_equals_the_default_partitioner(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_known_vectors_from_the_java_client() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        bytes([ord("a"), ord("b"), ord("c")]): 479470107,
    }
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFFFFFF, data
