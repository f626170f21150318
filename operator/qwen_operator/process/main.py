"""Run the operator: Kopf in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os


def run(namespaces: list[str], all_namespaces: bool) -> int:
    """Watch `namespaces`, or every namespace (also the default when none is named)."""
    import kopf

    from qwen_operator.process import handlers  # registers the handlers with Kopf's default registry

    logging.basicConfig(
        level=os.environ.get("QWEN_OPERATOR_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # a line per event; ours say more
    clusterwide = all_namespaces or not namespaces
    logging.getLogger(handlers.__name__).info(
        "watching %s", "all namespaces" if clusterwide else ", ".join(namespaces)
    )
    watched = [] if clusterwide else namespaces
    # The optional kinds' watches (optional_kinds.py) read the same namespaces from the memo.
    memo = kopf.Memo(namespaces=tuple(watched))
    kopf.run(standalone=True, clusterwide=clusterwide, namespaces=watched, memo=memo)
    return 0
