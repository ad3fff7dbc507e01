"""Tenants beyond their accounts: the gallery space each one owns, and deleting all of it."""

from __future__ import annotations

from faceatlas.gallery import Gallery
from faceatlas.service.accounts import Accounts


def gallery_tenant(tenant_id: str) -> str:
    """The gallery tenant of a service tenant: ``svc:<id>``. Service tenant ids have no colon, so
    this space meets neither the CLI's tenants nor the apps' (``app:<app>:<name>``)."""
    return f"svc:{tenant_id}"


def delete_tenant(accounts: Accounts, gallery: Gallery, tenant_id: str) -> int:
    """Delete a tenant and everything it owns: every collection (faces, vectors, crops, index
    files), its keys and its account. Its usage rows stay (the bill), as does the audit record of
    the deletion. Returns the number of collections deleted."""
    accounts.get_tenant(tenant_id)  # NotFound before anything is touched
    owned = gallery.for_tenant(gallery_tenant(tenant_id))
    collections = owned.list_collections()
    for collection in collections:
        owned.delete_collection(collection.name)
    accounts.delete_tenant(tenant_id)
    return len(collections)
