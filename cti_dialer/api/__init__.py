"""The HTTP API (``cti-dialer api``): the admin layer over HTTP, with its OpenAPI document and the web console.

``app`` builds the WSGI application, ``server`` runs it on gevent's server,
``schemas`` declares every request and response, ``status`` reads what the
daemons report, and the ``*_routes`` modules hold the views.
"""
