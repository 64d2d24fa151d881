"""Who may do what with the queue, whichever door they come through (gRPC or the actor)."""
