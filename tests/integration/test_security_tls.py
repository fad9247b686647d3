"""``syncbus kafka start --tls``: SASL/SCRAM over TLS with a CA the command makes.

librdkafka and aiokafka (Faust's client) both log in through the CA file; a client
that does not speak TLS gets nowhere; a restart without flags stays secure.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from syncbus import settings
from syncbus.connection import Connection
from syncbus.core.access import ADMIN
from syncbus.localkafka import broker
from syncbus.localkafka.secure import admin_password, ca_file


def test_tls_broker_takes_logins_over_tls_only(tmp_path: Path) -> None:
    directory = tmp_path / "tls-kafka"
    info, _ = broker.start(directory, 0, Path(settings.get("kafka_cache")), tls=True)
    broker.stop_when_gone(os.getpid(), directory)
    try:
        assert info.secure and info.tls
        assert (os.stat(directory / "admin.password").st_mode & 0o077) == 0
        admin = Connection(info.address, ADMIN, admin_password(directory), str(ca_file(directory)))
        assert admin.protocol == "SASL_SSL"
        AdminClient(admin.confluent()).list_topics(timeout=10)

        async def aiokafka_lists() -> list[str]:
            client = AIOKafkaAdminClient(**admin.aiokafka())
            await client.start()
            try:
                return list(await client.list_topics())
            finally:
                await client.close()

        assert isinstance(asyncio.run(asyncio.wait_for(aiokafka_lists(), 30)), list)
        no_tls = Connection(info.address, ADMIN, admin_password(directory))
        with pytest.raises(KafkaException):
            AdminClient(no_tls.confluent(log_level=0)).list_topics(timeout=5)

        broker.stop(directory)
        again, _ = broker.start(directory, None, Path(settings.get("kafka_cache")))
        assert again.secure and again.tls and again.address == info.address
    finally:
        broker.stop(directory)
