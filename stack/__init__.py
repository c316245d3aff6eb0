"""Run the whole stack on its embedded defaults, for `make run`, the tests and the benchmark."""
