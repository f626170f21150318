"""A real vLLM in the loop: the community CPU build in a cached venv (`env`), a tiny Qwen3-MoE
checkpoint made here (`checkpoint`), the rendered server container run as a process (`server`,
with the kubelet's part in `kubelet`) and a harness that backs simulated pods with it (`harness`)."""
