"""vLLM command-line contract: the operator's server argv against vLLM's own parser."""
