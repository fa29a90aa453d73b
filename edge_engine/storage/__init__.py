"""Object storage: witness images and plugin files uploaded to S3 (MinIO, SeaweedFS, AWS) from a queue on disk.

:mod:`~edge_engine.storage.storage_settings` reads ``FILE_UPLOAD`` and ``EE_MINIO_*``; :mod:`~edge_engine.storage.queue`
keeps what waits on disk; :mod:`~edge_engine.storage.uploader` talks to S3 (``minio``, imported only when
configured); :mod:`~edge_engine.storage.service` ties them to the node's payloads and plugins. See docs/storage.md.
"""
