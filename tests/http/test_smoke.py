from tests.conftest import ALTINN_CONTENT_TYPE, VALID


async def test_published(make_client, fake_publisher):
    client = await make_client()
    resp = await client.post("/api/v1/events", data=VALID[0].read_bytes(), headers={"Content-Type": ALTINN_CONTENT_TYPE})
    assert resp.status == 200
    assert len(fake_publisher.records) == 1
