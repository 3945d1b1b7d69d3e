"""REST gateway."""
