"""Test support: harnesses, local servers and fakes shared by the test modules (a package)."""
