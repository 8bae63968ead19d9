"""Use cases, one method each; no tornado, no database driver, no HTTP."""

from lomas_server.service.admin import AdminService
from lomas_server.service.analyst import AnalystService, Limits

__all__ = ["AdminService", "AnalystService", "Limits"]
