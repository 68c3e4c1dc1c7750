"""How the table formats reach the bucket and the Iceberg catalog: one resource (`LakeAccess`,
resource key `lake`) that the table IO manager (exports/tables.py) and the table checks
(exports/table_checks.py) share, built by resources.py from the settings the object store uses.

- Where: a table's location is the store's URI of its s3_path (`s3://<bucket>/<s3_path>` in
  production, `file:///<local folder>/bucket/<s3_path>` on the embedded default).
- S3 access for pyiceberg's and delta-rs's own S3 clients: the store's S3Resource settings
  (AWS_ENDPOINT_URL[_S3], AWS_REGION, keys or AWS_PROFILE), resolved to credentials as boto3
  resolves them (keys, profile, SSO, instance role) when a run asks, never earlier, and never
  logged: they go to the libraries as their own properties, not into metadata or messages.
- The Iceberg catalog: `iceberg_catalog` (DATA_MIGRATION_ICEBERG_CATALOG) names a pyiceberg
  catalog configured as pyiceberg users configure one (`.pyiceberg.yaml`, or
  `PYICEBERG_CATALOG__<NAME>__<PROPERTY>` variables, which pyiceberg reads itself); this
  resource adds only the S3 properties the catalog's configuration leaves out. Unset, a
  pyiceberg SqlCatalog on SQLite in `catalog_dir` (the project's local folder), its warehouse the
  store's root. SQLite is pyiceberg's development catalog: one machine, no shared writers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from data_migration.files.storage import ObjectStore, S3ObjectStore
from data_migration.tables.delta import s3_storage_options

DEFAULT_CATALOG = "data_migration"  # the name of the SQLite catalog when no catalog is named
CATALOG_FILE = "iceberg-catalog.db"
DEFAULT_REGION = "us-east-1"


class CatalogError(RuntimeError):
    """The named catalog is not configured; the message says where pyiceberg looked."""


class LakeAccess(ConfigurableResource):
    """The store's tables: their locations, S3 access for pyiceberg and deltalake, the catalog."""

    store: ObjectStore
    iceberg_catalog: str | None = Field(
        default=None, description="A pyiceberg catalog's name (.pyiceberg.yaml or PYICEBERG_CATALOG__*)."
    )
    catalog_dir: str = Field(description="Folder of the SQLite catalog used when no catalog is named.")
    # The store's endpoint, region and credentials, resolved once per resource instance (a run's).
    _resolved: dict[str, Any] | None = PrivateAttr(default=None)

    def location(self, s3_path: str) -> str:
        return self.store.uri(s3_path.rstrip("/"))

    def warehouse(self) -> str:
        return self.store.uri("").rstrip("/") + "/"

    def on_s3(self) -> bool:
        return isinstance(self.store, S3ObjectStore)

    def _s3(self) -> dict[str, Any]:
        """Endpoint, region and credentials as boto3 resolves them from the store's settings."""
        import boto3

        if self._resolved is not None:
            return self._resolved
        assert isinstance(self.store, S3ObjectStore)
        s3 = self.store.s3
        session = boto3.session.Session(
            aws_access_key_id=s3.aws_access_key_id or None,
            aws_secret_access_key=s3.aws_secret_access_key or None,
            aws_session_token=s3.aws_session_token or None,
            profile_name=s3.profile_name or None,
            region_name=s3.region_name or None,
        )
        found = session.get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
        self._resolved = {
            "endpoint": s3.endpoint_url or None,
            "region": session.region_name or DEFAULT_REGION,
            "key": frozen.access_key if frozen else None,
            "secret": frozen.secret_key if frozen else None,
            "token": frozen.token if frozen else None,
        }
        return self._resolved

    def iceberg_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties (s3.*) for the store; none for a local folder."""
        if not self.on_s3():
            return {}
        s3 = self._s3()
        properties = {"s3.region": s3["region"]}  # unset, pyiceberg asks AWS for the bucket's region
        for name, value in (
            ("s3.endpoint", s3["endpoint"]),
            ("s3.access-key-id", s3["key"]),
            ("s3.secret-access-key", s3["secret"]),
            ("s3.session-token", s3["token"]),
        ):
            if value:
                properties[name] = value
        return properties

    def delta_options(self) -> dict[str, str]:
        """deltalake storage_options for the store; none for a local folder."""
        if not self.on_s3():
            return {}
        s3 = self._s3()
        options = s3_storage_options(s3["region"], s3["endpoint"], s3["key"], s3["secret"])
        if s3["token"] and "aws_access_key_id" in options:
            options["aws_session_token"] = s3["token"]
        return options

    def filesystem(self) -> pafs.FileSystem:
        """A pyarrow filesystem over the store, for the orphan sweep."""
        if not self.on_s3():
            return pafs.LocalFileSystem()
        s3 = self._s3()
        endpoint = s3["endpoint"]
        return pafs.S3FileSystem(
            access_key=s3["key"],
            secret_key=s3["secret"],
            session_token=s3["token"],
            region=s3["region"],
            endpoint_override=endpoint,
            scheme="http" if endpoint and endpoint.startswith("http://") else "https",
        )

    def catalog(self) -> Any:
        """The pyiceberg catalog (see the module docstring)."""
        from pyiceberg.catalog import load_catalog
        from pyiceberg.catalog.sql import SqlCatalog
        from pyiceberg.utils.config import Config

        properties = self.iceberg_properties()
        if self.iceberg_catalog:
            configured = Config().get_catalog_config(self.iceberg_catalog)
            if not configured:
                raise CatalogError(
                    f"DATA_MIGRATION_ICEBERG_CATALOG={self.iceberg_catalog!r} names a catalog pyiceberg has no "
                    f"configuration for: add it under `catalog:` in .pyiceberg.yaml (in $PYICEBERG_HOME, the home "
                    f"folder or the working directory), or set PYICEBERG_CATALOG__{self.iceberg_catalog.upper()}__TYPE "
                    "and its other properties"
                )
            # The configuration read now (pyiceberg's own module-level copy is read at its import),
            # and the store's S3 properties where it names none.
            return load_catalog(self.iceberg_catalog, **{**properties, **configured})
        folder = Path(self.catalog_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return SqlCatalog(
            DEFAULT_CATALOG, uri=f"sqlite:///{folder / CATALOG_FILE}", warehouse=self.warehouse(), **properties
        )

    def catalog_description(self) -> str:
        if self.iceberg_catalog:
            return f"pyiceberg catalog {self.iceberg_catalog!r}"
        return f"SQLite catalog {Path(self.catalog_dir) / CATALOG_FILE}"
