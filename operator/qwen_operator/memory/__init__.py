"""The memory logic: the planner (what context fits the GPUs) and the cures (what to change
after an out-of-memory, chosen by its cause)."""
