"""Admission policies shipped beside the operator (ValidatingAdmissionPolicy, Kubernetes 1.30+),
generated here so that the checked-in manifests cannot drift from the code they guard:

- `operator_writes`: what the operator's own ServiceAccount may write, whatever its RBAC allows
  (manifests/validatingadmissionpolicy*.yaml, on by default);
- `tenant`: what a platform admin lets tenants ask for in a QwenThinkingDeployment
  (manifests/tenant-policy/, optional), with the same rules in Python for `render --policy`.
"""
