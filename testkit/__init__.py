"""Shared test builders and data used by both the unit tests (tests/) and the e2e suite (e2e/)."""
