"""The worker pools: one per queue, each started and scaled on its own."""
