"""The chaos suite (`make chaos`): faults injected into a real, private stack under load."""
