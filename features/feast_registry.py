"""Feast's file registry, written crash-safely.

Feast's ``FileRegistryStore`` rewrites ``registry.db`` in place (open ``"wb"``, write): a
SIGKILL between the truncate and the write leaves an empty registry and every view "does not
exist" until ``feast apply`` runs again (found by tests/integration/test_crash_safety.py,
materialize). This subclass writes through :func:`features.durable.atomic_write_bytes`, so
the file is always the old or the new registry. Selected in ``feature_store.yaml`` by
``registry_store_type``.
"""

from __future__ import annotations

import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now

from features.durable import atomic_write_bytes


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        atomic_write_bytes(self._filepath, registry_proto.SerializeToString())
