"""The manager's network face: gRPC services, auth, proto conversion, and a typed client.

``server.QueueServer`` serves ``QueueService`` and ``AutoscalerService`` (protos in
``protos/ray_queue/v1``) over any ``backend.Backend``; ``client.QueueClient`` is the typed
Python side; ``address`` is where clients find the server (the manager publishes it in
Ray). Protobuf stays in this package: everything crossing its edge is an engine
value or a ``ray_queue`` error.
"""
