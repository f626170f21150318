"""Pinned, cached control-plane binaries: etcd, kube-*, kubectl and kwok built from Go modules."""
