"""The end-to-end suite (conftest, operator_fixtures, test_*); the development tooling it runs
against - the local control plane, its toolchain, demo and simulate - is e2e.devcluster."""
