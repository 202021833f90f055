"""The v0.7 REST facade: the original API's HTTP/1.1 JSON interface, so that its official clients run unchanged,
in the same process as gRPC and over the same use cases (never through the gRPC servicers).

- ``routes``: the endpoints, each a handler over the use cases;
- ``converters``: v0.7 JSON in and out (integer ids for an organisation's resources, lists with absolute URLs);
- ``forms``: JSON and multipart bodies (Django REST framework's nested field names, uploaded files spooled);
- ``errors``: the gRPC status table as HTTP statuses and v0.7 JSON error bodies;
- ``server``: the aiohttp application, its middleware (request ids, spans, access log, metrics, API keys,
  drain) and its site.
"""

from service.api.rest.routes import PREFIX, RestRoutes
from service.api.rest.server import RestServer

__all__ = ["PREFIX", "RestRoutes", "RestServer"]
