"""Storage: the catalog of images and the blobs it describes.

- ``store.ImageStore``: the storage service's model (blobs + catalog);
- ``catalog``: SQLAlchemy tables and status transitions, ``migrations/``;
- ``blobs``: the ``BlobStore`` interface, its keys and the backend choice
  (``blobs.files`` on local disk, ``blobs.s3`` in an object store).
"""
