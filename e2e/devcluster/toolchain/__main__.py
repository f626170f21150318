"""`python -m e2e.devcluster.toolchain build|gomod|bin-dir|tools|tools-gomod`."""

from __future__ import annotations

import argparse

from e2e.devcluster.toolchain import build, gomod, tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.devcluster.toolchain")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build or reuse the cached control-plane binaries")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    sub.add_parser("gomod", help="regenerate the per-tool go.mod files from versions.py")
    sub.add_parser("bin-dir", help="print the directory holding the binaries")
    t = sub.add_parser(
        "tools",
        help="build or reuse the tools (tools.py); fetch the modules the tests read",
    )
    t.add_argument("names", nargs="*", help="only these tools (and no module download)")
    t.add_argument("--force", action="store_true", help="rebuild even when cached")
    g = sub.add_parser("tools-gomod", help="regenerate the go.mod files of those tools from versions.py")
    g.add_argument("names", nargs="*", help="only these tools")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build.build(force=args.force))
    elif args.command == "gomod":
        for path in gomod.generate():
            print(path)
    elif args.command == "tools":
        for path in tools.build(args.names or None, force=args.force):
            print(path)
    elif args.command == "tools-gomod":
        for path in tools.generate(args.names or None):
            print(path)
    else:
        print(build.bin_dir())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
