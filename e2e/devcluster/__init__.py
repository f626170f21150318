"""Development tooling: the local control plane and its pinned toolchain, `make run`/`make demo`
and failure simulation. The end-to-end suite (the modules directly in e2e/) uses it; nothing
here imports the suite.

    cluster     `python -m e2e.devcluster.cluster up|down|status|env|add-nodes`
    components  the control-plane processes, their flags, kubeconfigs and audit policy
    nodes       simulated GPU nodes and the default StorageClass
    pki         the cluster's CA, serving and client certificates
    toolchain   `python -m e2e.devcluster.toolchain build|gomod|bin-dir`: the cached binaries
    kube        kubectl, wait_for, terminate_container: helpers against a running cluster
    demo        `make run` / `make demo`
    simulate    `python -m e2e.devcluster.simulate`: a simulated server fails as the launcher reports
"""
