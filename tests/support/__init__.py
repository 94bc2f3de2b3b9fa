"""Stand-ins and helpers that only the tests use."""
