"""End-to-end suite and the local control plane it runs against."""
