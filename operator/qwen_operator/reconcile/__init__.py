"""The reconcile loop: `observe` reads a typed snapshot from the cache, `decide` (pure, a chain
of small policies) returns the complete write plan, `act` executes it and decides nothing."""
